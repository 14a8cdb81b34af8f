"""Command-line entry points; ``scripts/*.py`` are thin wrappers around these ``main`` functions."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pisasr.errors import PiSAError


def quiet_libraries() -> None:
    """No per-file progress bars or info logs from diffusers/transformers: our own bar and messages suffice."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning, module="huggingface_hub")
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    hub_logging.set_verbosity_error()  # its retry chatter when the hub is unreachable; our error says what to do


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


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a ``PiSAError`` becomes one ``error:`` line and exit code 2 (no traceback)."""
    try:
        return main(argv)
    except PiSAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
