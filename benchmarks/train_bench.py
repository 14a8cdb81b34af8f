"""Training-step benchmark on the full-size random base: seconds per step and peak memory, per stage.

    python -m benchmarks.train_bench --stage pix --crop 256
    python -m benchmarks.train_bench --stage sem --crop 256     # adds LPIPS(VGG) and the CSD teacher
    bash benchmarks/run_train.sh

Runs the same ``PiSATrainModel.losses`` as scripts/train.py (degradation, VAE, UNet with adapters, decode,
losses, backward, AdamW step) at batch 1. The ``pix`` stage never runs the teacher; the ``sem`` stage runs it on a
doubled batch (negative and positive prompt), which is the saving this benchmark makes visible.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.common import append_row, machine, median_time, peak_memory_gb
from pisasr.cli import quiet_libraries


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=".cache/random-sd21")
    p.add_argument("--stage", choices=["pix", "sem"], required=True)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--gradient_checkpointing", action="store_true")
    p.add_argument("--log", default="benchmarks/results/train.jsonl")
    args = p.parse_args()
    torch.set_flush_denormal(True)
    quiet_libraries()
    from pisasr.data.degradation import Degrader, load_degradation, model_input, sample_kernels
    from pisasr.losses import CSDLoss, make_lpips
    from pisasr.model import DualLoRA, load_base
    from pisasr.training.model import LossWeights, PiSATrainModel

    base = load_base(args.base)
    dual = DualLoRA(base.unet)
    if args.gradient_checkpointing:
        base.unet.enable_gradient_checkpointing()
    lpips = csd = None
    if args.stage == "sem":  # only stage 2 loads and runs these, as in training
        teacher = load_base(args.base, text_encoder=False)
        lpips, csd = make_lpips(False), CSDLoss(teacher.unet, teacher.scheduler)
    model = PiSATrainModel(base, dual, lpips, csd, LossWeights(), "worst quality")
    dual.set_stage(args.stage)
    optimizer = torch.optim.AdamW(dual.trainable_parameters(), lr=5e-5, weight_decay=1e-2)
    params = load_degradation("configs/degradation/realesrgan.yaml")
    degrade = Degrader(params)
    gt = torch.rand(1, 3, args.crop, args.crop)
    kernels = {k: v[None] for k, v in sample_kernels(params, np.random.default_rng(0)).items()}

    def step() -> None:
        generator = torch.Generator().manual_seed(0)
        lq = model_input(degrade(gt, kernels, generator), (args.crop, args.crop))
        loss = model.losses(args.stage, lq * 2 - 1, gt * 2 - 1, ["a photo"], generator)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = median_time(step, args.repeats, args.warmup)
    row = {
        "machine": machine(),
        "suite": "train_step",
        "stage": args.stage,
        "crop": args.crop,
        "batch": 1,
        "gradient_checkpointing": args.gradient_checkpointing,
        "seconds_per_step": round(seconds, 2),
        "peak_rss_gb": round(peak_memory_gb(), 2),
    }
    append_row(args.log, row)


if __name__ == "__main__":
    main()
