"""``torch.compile`` for inference: where the kernels are cached, and saying when a compile happens.

Importing torch (through diffusers) already sets ``TORCHINDUCTOR_CACHE_DIR`` to inductor's default folder, so the
configured folder has to replace it outright, not only fill it in when unset. Inductor's FX-graph and AOTAutograd
caches and the Triton kernels then live there, and a second run (or a second process) reuses them.

Each new input size is a new graph: by default (``compile_dynamic: auto``, torch's own rule) the second size
compiles shape-generic kernels that later sizes reuse; ``true`` compiles shape-generic kernels from the start,
``false`` one static graph per size (the fastest kernels for folders of one size).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from pisasr.errors import ConfigError
from pisasr.io.paths import user_cache_dir

DYNAMIC = {"auto": None, "true": True, "false": False}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pisasr/torch-compile`` (``~/.cache/pisasr/torch-compile``)."""
    return user_cache_dir() / "torch-compile"


def use_cache_dir(folder: str | os.PathLike | None) -> Path:
    """Point inductor (and Triton, unless told otherwise) at ``folder``.

    None: a ``TORCHINDUCTOR_CACHE_DIR`` the user set is kept; the one torch sets for itself at import (its
    default, a temporary folder) gives way to the pisasr user cache.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir as torch_default

    own = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if folder:
        cache = Path(folder).expanduser().resolve()
    elif own and Path(own).resolve() != Path(torch_default()).resolve():
        cache = Path(own)
    else:
        cache = default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"inference.compile_cache_dir: cannot create {cache} ({exc.strerror or exc}); choose another folder"
        ) from None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    if "TRITON_CACHE_DIR" not in os.environ:
        os.environ["TRITON_CACHE_DIR"] = str(cache / "triton")
    return cache


def compile_modules(modules: list[nn.Module | None], mode: str, dynamic: str) -> None:
    for module in modules:
        if module is not None:
            module.compile(mode=mode, dynamic=DYNAMIC[dynamic])


class CompileWatch:
    """Around each model call that may compile: says when it did (a new size, pass or decode), how long it
    took and where the kernels went. A call that reuses compiled graphs prints nothing."""

    def __init__(self, cache: Path):
        self.cache = cache

    @contextmanager
    def call(self, shape: tuple[int, ...], passes: str):
        """Around one call on a batch of ``shape`` ([B, C, H, W]) running ``passes`` (e.g. "full+pix", "decode")."""
        graphs = _compiled_graphs()
        start = time.perf_counter()
        yield
        if _compiled_graphs() == graphs:
            return
        print(
            f"note: compiled for {shape[-2]}x{shape[-1]} (batch {shape[0]}, {passes}) in "
            f"{time.perf_counter() - start:.1f} s; kernels cached in {self.cache} for later runs",
            file=sys.stderr,
        )


def _compiled_graphs() -> int:
    """How many graphs Dynamo has compiled in this process so far."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
