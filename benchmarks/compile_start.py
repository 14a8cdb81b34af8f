"""Cold and warm start of ``scripts/infer.py --compile``: the same command twice on a fresh kernel cache.

The first run compiles and fills ``inference.compile_cache_dir``; the second finds the kernels there. Each run
is a fresh process, so what is measured is what a user waits for (imports, load, compile or cache hit, restore).

    python -m benchmarks.compile_start --device cpu                 # tiny offline base (mechanism only)
    python -m benchmarks.compile_start --base .cache/random-sd21 --device cuda --dtype bf16 --size 128
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import append_row, machine

REPO = Path(__file__).resolve().parents[1]


def timed_run(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: compiled")]
    return time.perf_counter() - start, " | ".join(notes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", help="base folder (default: the tiny offline base, generated)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--size", type=int, default=32, help="LR side in pixels (the output is 4x)")
    p.add_argument("--log", default="benchmarks/results/compile_start.jsonl")
    args = p.parse_args()
    from PIL import Image

    from pisasr.model.tiny_base import make_tiny_base

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = args.base or str(make_tiny_base(tmp / "tiny"))
        Image.new("RGB", (args.size, args.size), (120, 90, 60)).save(tmp / "lr.png")
        cache = tmp / "kernels"
        command = [
            sys.executable, "scripts/infer.py", "-i", str(tmp / "lr.png"), "--base", base,
            "--device", args.device, "--dtype", args.dtype, "--process_size", str(args.size * 4),
        ]  # fmt: skip
        compiled = [*command, "--compile", f"inference.compile_cache_dir={cache}"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
        eager, _ = timed_run([*command, "-o", str(tmp / "eager")], env)
        cold, cold_note = timed_run([*compiled, "-o", str(tmp / "cold")], env)
        files = sum(1 for f in cache.rglob("*") if f.is_file())
        warm, warm_note = timed_run([*compiled, "-o", str(tmp / "warm")], env)
    append_row(
        args.log,
        {
            "machine": machine(),
            "base": args.base or "tiny",
            "device": args.device,
            "dtype": args.dtype,
            "lr_size": args.size,
            "eager_run_s": round(eager, 1),
            "cold_run_s": round(cold, 1),
            "warm_run_s": round(warm, 1),
            "cache_files": files,
            "cold_note": cold_note,
            "warm_note": warm_note,
        },
    )


if __name__ == "__main__":
    main()
