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

from torch import nn

DYNAMIC = {"auto": None, "true": True, "false": False}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pisasr/torch-compile`` (``~/.cache/pisasr/torch-compile``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "pisasr" / "torch-compile"


def use_cache_dir(folder: str | os.PathLike | None) -> Path:
    """Point inductor (and Triton, unless told otherwise) at ``folder``; None: the pisasr user cache."""
    cache = Path(folder).expanduser().resolve() if folder else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    if "TRITON_CACHE_DIR" not in os.environ:
        os.environ["TRITON_CACHE_DIR"] = str(cache / "triton")
    return cache


def compile_modules(modules: list[nn.Module | None], mode: str, dynamic: str) -> None:
    for module in modules:
        if module is not None:
            module.compile(mode=mode, dynamic=DYNAMIC[dynamic])


class CompileWatch:
    """Times the first call per input size and says that it compiled, where the kernels went and why."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.seen: set[tuple] = set()

    @contextmanager
    def call(self, shape: tuple[int, ...], passes: str):
        """Around one ``predict`` of a batch of ``shape`` ([B, C, H, W]) running ``passes``."""
        key = (tuple(shape), passes)
        if key in self.seen:
            yield
            return
        start = time.perf_counter()
        yield
        self.seen.add(key)
        print(
            f"note: compiled for {shape[-2]}x{shape[-1]} (batch {shape[0]}, {passes}) in "
            f"{time.perf_counter() - start:.1f} s; once per size, kernels cached in {self.cache} for later runs",
            file=sys.stderr,
        )
