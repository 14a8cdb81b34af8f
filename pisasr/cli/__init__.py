"""Command-line entry points; ``scripts/*.py`` are thin wrappers around these ``main`` functions."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pisasr.errors import PiSAError

# Installed beside pisasr but never used by it: bitsandbytes comes with pyiqa, and diffusers, transformers and peft
# import it whenever it is installed; on CPUs with AVX512-BF16 its import then fetches a kernel from the hub (a
# warning offline, a network request online). A ``None`` entry in ``sys.modules`` makes ``importlib.util.find_spec``
# answer "not installed", which is what those libraries ask before importing it.
UNUSED_PACKAGES = ("bitsandbytes",)


def quiet_libraries() -> None:
    """Prepare a pisasr command's process: packages pisasr never uses stay unimported, and no per-file progress
    bars or info logs come from diffusers/transformers (our own bar and messages suffice). Only for the
    command-line entry points: the Python API leaves the user's modules and logging alone."""
    import logging
    import warnings

    for name in UNUSED_PACKAGES:
        if name not in sys.modules:  # already imported by the caller: theirs to keep
            sys.modules[name] = None
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    quiet_rapidocr()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning, module="huggingface_hub")
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    hub_logging.set_verbosity_error()  # its retry chatter when the hub is unreachable; our error says what to do


def quiet_rapidocr() -> None:
    """rapidocr (``--protect text``, ``ocr_cer``) logs INFO lines and a warning per text-free image to its own
    stderr handler. Its logger keeps only errors: a handler of ours at ERROR, added before rapidocr's import makes
    rapidocr add none (it adds its own only to a logger without handlers), and any handler it already added is
    raised to ERROR. Only that logger is touched; rapidocr resets its level, not its handlers' levels."""
    import logging

    from pisasr.regions.text import LOGGER

    logger = logging.getLogger(LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("rapidocr: %(message)s"))
        logger.addHandler(handler)
    for handler in logger.handlers:
        handler.setLevel(logging.ERROR)
    logger.propagate = False


def apply_flags(cfg, args, flags: dict[str, str]) -> None:
    """Set ``cfg[key]`` from each command-line flag that was given (``flags``: flag name -> config key), then
    validate; a value of the wrong type is a one-line ``ConfigError`` naming the flag."""
    from omegaconf import OmegaConf

    from pisasr.config import validate
    from pisasr.errors import ConfigError

    for flag, key in flags.items():
        value = getattr(args, flag)
        if value is not None:
            try:
                OmegaConf.update(cfg, key, value, merge=True)
            except Exception as exc:
                raise ConfigError(f"--{flag} {value!r}: {str(exc).splitlines()[0]}") from None
    validate(cfg)


def run_cli(
    main: Callable[[list[str] | None], int], argv: list[str] | None = None, stop_signals: bool = False
) -> int:
    """Run ``main``; a ``PiSAError`` becomes one ``error:`` line and exit code 2 (no traceback). Ctrl-C, and with
    ``stop_signals`` SIGTERM and SIGHUP too, end it with ``128 + signal number`` (``pisasr.cli.stopping``); with
    ``stop_signals`` the handlers stay installed after it returns (for a command's process, which exits next)."""
    from contextlib import nullcontext

    from pisasr.cli.stopping import exit_code_of, stop_on_signals

    quiet_libraries()
    try:
        with stop_on_signals(restore=False) if stop_signals else nullcontext():
            return main(argv)
    except PiSAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        code, name = exit_code_of(exc)
        print(f"interrupted ({name}, exit code {code})", file=sys.stderr)
        return code
