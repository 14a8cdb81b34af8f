"""Degradation throughput: 512x512 GT, batched on the device vs one sample at a time.

python benchmarks/degradation_bench.py [--batch 16] [--size 512] [--device cpu]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import machine, median_time
from pisasr.data.degradation import Degrader, load_degradation, sample_kernels
from pisasr.devices import resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = resolve_device(args.device)
    params = load_degradation("configs/degradation/realesrgan.yaml")
    rng = np.random.default_rng(0)
    gt = torch.rand(args.batch, 3, args.size, args.size, device=device)
    samples = [sample_kernels(params, rng) for _ in range(args.batch)]
    kernels = {k: torch.stack([s[k] for s in samples]).to(device) for k in samples[0]}
    degrade = Degrader(params, device)

    kernel_time = median_time(lambda: [sample_kernels(params, rng) for _ in range(args.batch)], args.repeats)
    batched = median_time(lambda: degrade(gt, kernels, torch.Generator().manual_seed(0)), args.repeats)
    single = median_time(
        lambda: [
            degrade(
                gt[i : i + 1], {k: v[i : i + 1] for k, v in kernels.items()}, torch.Generator().manual_seed(i)
            )
            for i in range(args.batch)
        ],
        args.repeats,
    )
    print(f"machine: {machine()}; device {device}; {args.batch} images of {args.size}x{args.size}")
    print("| mode | images/s |")
    print("| --- | --- |")
    print(f"| kernel sampling (worker side, per image) | {args.batch / kernel_time:.1f} |")
    print(f"| batched degradation (batch {args.batch}) | {args.batch / batched:.2f} |")
    print(f"| one sample at a time | {args.batch / single:.2f} |")


if __name__ == "__main__":
    main()
