"""CPU time per image: onnxruntime on a ``--to onnx`` export vs pisasr eager, on the full-size random base.

    python -m benchmarks.make_random_base .cache/random-sd21      # once
    python -m benchmarks.onnx_bench --threads 2 [--pair 1,1] [--out_size 512]

Exports the random adapters at ``--pair`` (equal lambdas: one scaled UNet graph; else pix and full) into
``--export_dir`` unless it is there, then restores the same ``out_size / 4`` image with ``Pipeline`` (CPU, fp32,
default settings) and with ``examples/onnx_restore.py``'s ``OnnxPiSASR``, each in turn with ``--threads`` threads;
median of ``--repeats`` after ``--warmup``. Prints a markdown row and appends JSON to ``--log``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import append_row, machine, median_time, peak_memory_gb
from pisasr.cli import quiet_libraries

REPO = Path(__file__).resolve().parents[1]


def onnx_runner():
    spec = importlib.util.spec_from_file_location("onnx_restore", REPO / "examples" / "onnx_restore.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OnnxPiSASR


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=".cache/random-sd21")
    p.add_argument("--weights", default=".cache/random-sd21/adapters")
    p.add_argument("--export_dir", default=".cache/random-sd21-onnx")
    p.add_argument("--pair", default="1,1")
    p.add_argument("--out_size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--log", default="benchmarks/results/onnx_bench.jsonl")
    args = p.parse_args()
    quiet_libraries()
    torch.set_num_threads(args.threads)
    pair = tuple(float(v) for v in args.pair.split(","))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    lr = Image.fromarray(small).resize((args.out_size // 4,) * 2, Image.BICUBIC)

    export_dir = Path(args.export_dir)
    export_s = None
    if not export_dir.exists():
        from pisasr.config import load_config
        from pisasr.export import export

        cfg = load_config(None, [f"model.base={args.base}", f"model.weights={args.weights}"])
        start = time.perf_counter()
        export(cfg, "onnx", export_dir, *pair)
        export_s = time.perf_counter() - start
        gc.collect()

    from pisasr import Pipeline
    from pisasr.io.images import from_pil

    pipe = Pipeline.from_pretrained(args.base, args.weights, device="cpu")
    image = from_pil(lr)
    eager_s = median_time(lambda: pipe.restore(image, [pair]), args.repeats, args.warmup)
    eager_out = pipe.restore(image, [pair])[pair].numpy()
    eager_peak = peak_memory_gb()
    pipe = None  # free the eager model before onnxruntime loads its own copy
    gc.collect()

    model = onnx_runner()(export_dir, threads=args.threads)
    ort_s = median_time(lambda: model.restore(lr, *pair), args.repeats, args.warmup)
    ort_out = model.restore(lr, *pair)
    diff = float(np.abs(np.round(ort_out * 255) - np.round(eager_out * 255)).max())
    row = {
        "bench": "onnx_vs_eager",
        "machine": machine(),
        "threads": args.threads,
        "pair": list(pair),
        "out_size": args.out_size,
        "pisasr_eager_s": round(eager_s, 2),
        "onnxruntime_s": round(ort_s, 2),
        "speedup": round(eager_s / ort_s, 2),
        "max_8bit_diff": diff,
        "export_s": None if export_s is None else round(export_s, 1),
        "peak_rss_gb": round(max(eager_peak, peak_memory_gb()), 1),
    }
    print(
        f"| {args.out_size}px, pair {args.pair}, {args.threads} threads | pisasr eager {eager_s:.2f} s | "
        f"onnxruntime {ort_s:.2f} s | x{eager_s / ort_s:.2f} | max diff {diff:g}/255 |"
    )
    append_row(args.log, row)


if __name__ == "__main__":
    main()
