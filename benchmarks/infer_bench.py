"""Inference benchmark on the full-size random base (see make_random_base.py). Every figure comes from ``Pipeline``.

    python -m benchmarks.infer_bench --suite single --pair 1,1 [--dtype bf16] [--channels_last]  # one mode, 512x512
    python -m benchmarks.infer_bench --suite sweep                     # 3x3 sweep vs nine default runs
    python -m benchmarks.infer_bench --suite large --out_size 2048     # tiled; also 4096
    bash benchmarks/run_infer.sh                                       # all of the above, one process each

Reports model-load time apart from per-image time (median of --repeats after --warmup), peak memory (RSS on the
CPU, peak allocated on CUDA), FLOPs (torch.utils.flop_counter) and the achieved rate against a measured matmul
peak on the same device. Results are printed as markdown and appended as JSON lines to --log.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, median_time, peak_memory_gb
from pisasr.cli import quiet_libraries
from pisasr.inference.pipeline import Pipeline
from pisasr.io.images import LoadedImage


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_time(lambda: a @ b, repeats=5, warmup=2)
    return 2 * n**3 / seconds / 1e9


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def image(size: int) -> LoadedImage:
    g = torch.Generator().manual_seed(0)
    rgb = torch.nn.functional.interpolate(
        torch.rand(1, 3, 16, 16, generator=g), size=(size, size), mode="bicubic"
    )
    return LoadedImage(rgb=rgb[0].clamp(0, 1), alpha=None, grayscale=False, bit_depth=8)


def load(args, **options) -> tuple[Pipeline, float]:
    start = time.perf_counter()
    pipe = Pipeline.from_pretrained(args.base, args.weights, device=args.device, **options)
    return pipe, time.perf_counter() - start


def record(args, row: dict) -> None:
    row = {"machine": machine(), **row}
    print(json.dumps(row))
    with open(args.log, "a") as f:
        f.write(json.dumps(row) + "\n")


def suite_single(args) -> None:
    """One (lambda_pix, lambda_sem) pair in its own process, so that peak memory is this mode's alone."""
    lr = image(args.out_size // 4)
    pipe, load_s = load(args, dtype=args.dtype, channels_last=args.channels_last)
    pair = tuple(float(v) for v in args.pair.split(","))
    peak = matmul_peak_gflops(pipe.device, pipe.dtype)
    run = lambda: pipe.restore(lr, [pair])  # noqa: E731
    seconds = median_time(run, args.repeats, args.warmup)
    flops = count_flops(run)
    bound = flops / (peak * 1e9)
    record(
        args,
        {
            "suite": "single",
            "pair": list(pair),
            "dtype": args.dtype,
            "channels_last": args.channels_last,
            "out_size": args.out_size,
            "load_s": round(load_s, 2),
            "seconds": round(seconds, 2),
            "gflop": round(flops / 1e9, 1),
            "matmul_peak_gflops": round(peak, 1),
            "achieved_gflops": round(flops / seconds / 1e9, 1),
            "flop_bound_s": round(bound, 2),
            "vs_flop_bound": round(seconds / bound, 2),
            "peak_mem_gb": round(peak_memory_gb(pipe.device), 2),
        },
    )


def suite_sweep(args) -> None:
    lr = image(args.out_size // 4)
    pipe, load_s = load(args)
    pairs = [(p, s) for p in (0.5, 1.0, 1.5) for s in (0.5, 1.0, 1.5)]
    sweep = median_time(lambda: pipe.restore(lr, pairs), args.repeats, args.warmup)
    separate = median_time(lambda: [pipe.restore(lr, [(1.0, 1.0)]) for _ in pairs], args.repeats, 0)
    record(
        args,
        {
            "suite": "sweep",
            "out_size": args.out_size,
            "load_s": round(load_s, 2),
            "sweep_3x3_s": round(sweep, 2),
            "nine_default_runs_s": round(separate, 2),
            "speedup": round(separate / sweep, 2),
            "peak_mem_gb": round(peak_memory_gb(pipe.device), 2),
        },
    )


def suite_large(args) -> None:
    lr = image(args.out_size // 4)
    pipe, load_s = load(args, dtype=args.dtype, vae_tile=args.vae_tile)
    start = time.perf_counter()
    out = pipe.restore(lr, [(1.0, 1.0)])[(1.0, 1.0)]
    seconds = time.perf_counter() - start
    record(
        args,
        {
            "suite": "large",
            "out_size": args.out_size,
            "dtype": args.dtype,
            "shape": list(out.shape),
            "load_s": round(load_s, 2),
            "seconds": round(seconds, 1),
            "latent_tile": pipe.options.latent_tile,
            "vae_tile": pipe.options.vae_tile,
            "peak_mem_gb": round(peak_memory_gb(pipe.device), 2),
        },
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=".cache/random-sd21")
    p.add_argument("--weights", default=None, help="default: BASE/adapters")
    p.add_argument("--suite", choices=["single", "sweep", "large"], required=True)
    p.add_argument("--pair", default="1,1", help="lambda_pix,lambda_sem (suite single)")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--vae_tile", type=int, default=1024, help="VAE tile in pixels (suite large)")
    p.add_argument("--out_size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--log", default="benchmarks/results/infer.jsonl")
    args = p.parse_args()
    args.weights = args.weights or str(Path(args.base) / "adapters")
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    torch.set_flush_denormal(True)  # random weights can produce denormals, which are slow on CPUs
    quiet_libraries()
    {"single": suite_single, "sweep": suite_sweep, "large": suite_large}[args.suite](args)


if __name__ == "__main__":
    main()
