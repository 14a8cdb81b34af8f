"""Atomic file writes: a reader (or a killed run) sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from pisasr.errors import PiSAError


def _umask_by_setting_it() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Where /proc is missing (macOS), the umask can only be read by setting it, which is not safe while other threads
# create files: read once, at import, in the importing thread.
_UMASK_AT_IMPORT = _umask_by_setting_it()


def current_umask() -> int:
    """The process umask, read live from /proc where it exists (without changing it)."""
    try:
        match = re.search(r"^Umask:\s*([0-7]+)", Path("/proc/self/status").read_text(), re.MULTILINE)
        if match:
            return int(match.group(1), 8)
    except OSError:
        pass
    return _UMASK_AT_IMPORT


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it over ``path``.

    The file gets the mode any other tool would give it: the replaced file's, or ``0o666`` less the umask for a new
    one (the temporary file is created private, 0600, and must not keep that mode). ``suffix`` keeps the temporary
    name's extension for writers that pick the format from it (OpenCV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PiSAError(
            f"output folder {folder} is not writable ({exc.strerror or exc}); choose another with -o"
        ) from None
