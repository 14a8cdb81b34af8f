"""The demo's memory over many sessions, and the cost of refusing an oversized upload.

Drives ``DemoEngine`` (no browser) on the tiny offline base: each session uploads a different image of
``--size`` pixels square and moves the sliders ``--moves`` times; the process RSS is printed after each session.
``--max_sessions`` at or above ``--sessions`` keeps every entry, as the demo did before its cache had a cap.

python -m benchmarks.demo_memory [--sessions 12] [--size 256] [--max_sessions 4] [--moves 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from benchmarks.common import machine
from pisasr.cli import quiet_libraries
from pisasr.demo.engine import DemoEngine, DemoLimits
from pisasr.errors import ImageError
from pisasr.inference.pipeline import Pipeline
from pisasr.model.tiny_base import make_tiny_base


def rss_gb() -> float:
    return psutil.Process().memory_info().rss / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--max_sessions", type=int, default=4)
    p.add_argument("--moves", type=int, default=3)
    args = p.parse_args()
    quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="pisasr-demo-bench-"))
    pipe = Pipeline.from_pretrained(str(make_tiny_base(work / "tiny")), device="cpu")
    engine = DemoEngine(pipe, work / "results", DemoLimits(max_sessions=args.max_sessions))
    print(f"{machine()}; {args.size}x{args.size} uploads, --max_sessions {args.max_sessions}")

    flat = work / "flat.png"
    Image.new("RGB", (800, 800), "gray").save(flat)
    start = time.perf_counter()
    try:
        engine.load(flat)
    except ImageError as exc:
        print(f"800x800 flat PNG ({flat.stat().st_size / 1e3:.1f} KB) refused in "
              f"{(time.perf_counter() - start) * 1e3:.1f} ms: {exc}")  # fmt: skip

    print(f"start: RSS {rss_gb():.2f} GB")
    rng = np.random.default_rng(0)
    for session in range(1, args.sessions + 1):
        photo = work / f"upload{session}.png"
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(photo)
        cached = engine.load(photo)
        for lp in np.linspace(0.5, 1.5, args.moves):
            engine.preview(engine.render(cached, float(lp), 1.0)[0])
        print(f"session {session:2d}: RSS {rss_gb():.2f} GB, {len(engine.cache)} cached "
              f"({engine.cache.nbytes / 1e6:.0f} MB of tensors)")  # fmt: skip


if __name__ == "__main__":
    main()
