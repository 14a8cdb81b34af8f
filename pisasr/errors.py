"""User-facing errors.

Every error a user can cause (bad config, missing file, unreadable image, absent model) is raised as a
``PiSAError`` with a one-line message that names the culprit and says what to do. The CLIs print these
messages without a traceback; anything else is a bug and keeps its traceback.
"""


class PiSAError(Exception):
    """Base class: a problem with the user's input, files or environment."""


class ConfigError(PiSAError):
    """An unknown, mistyped or invalid configuration value."""


class ModelLoadError(PiSAError):
    """A base model or checkpoint that cannot be found or read."""


class ImageError(PiSAError):
    """An input image that cannot be read or processed."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 file"``, ``"2 files"`` (``nouns`` where adding an s is wrong)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
