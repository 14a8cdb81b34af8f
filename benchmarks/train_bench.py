"""Training-step benchmark on any device: the model the training code builds, one optimizer step per call.

    python -m benchmarks.train_bench --mixed_precision bf16 --batches 1,4,8 --gradient_checkpointing both --compile
    python -m benchmarks.train_bench --device cpu --base ~/.cache/pisasr/tiny-sd-base --crop 64 --batches 1 --repeats 1
    python -m benchmarks.train_bench --objective csd,vsd,add --stage sem --crop 128   # the semantic objectives
    bash benchmarks/run_gpu_train.sh      # the GPU grid (bf16 and fp16), its table into BENCHMARKS.md
    bash benchmarks/run_train.sh          # CPU rows, stages pix and sem at crops 256 and 512

The model is ``build_model`` of the training loop on ``configs/train_official_sd21.yaml`` (base and teacher set to
``--base``, the full-size random base of make_random_base.py by default; LPIPS with a random VGG, same compute),
the optimizer ``build_optimizer``, under Accelerate's autocast (and loss scaling for fp16). A step is what a
training step does on the device: the second-order degradation of a GT batch, ``PiSATrainModel.losses`` (stage
``pix``: UNet, decode, L2; stage ``sem``: plus LPIPS and the CSD teacher on a doubled batch), backward, gradient
clipping, AdamW. Reported per (stage, batch, gradient checkpointing, compiled UNet): ms per step (median of
--repeats after --warmup, synchronised), images/s, peak memory (``torch.cuda.max_memory_allocated``; on the CPU
the process's peak RSS, which only grows), the model FLOPs of a step (``torch.utils.flop_counter`` on one
uncompiled, uncheckpointed step at batch 1, times the batch: recomputation is not counted) and the model FLOPs
utilisation against a matmul measured on the same device and dtype, plus the degradation's images/s on the
device at that batch (it must outrun the step).

``--objective`` (csd, vsd, add or a comma list) builds the model with that ``train.sem_objective``; a step then
includes the objective's own step (ADD's discriminator before the generator's, VSD's fake score after it) and the
row records the objective. ADD's DINO / DINOv2 come from ``--dino`` / ``--dinov2`` (hub ids or folders); ``random``
writes full-size random ViT-S/16 and DINOv2-S/14 into ``.cache/`` (same compute, no download).
"""

from __future__ import annotations

import argparse
import gc
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import append_row, machine, median_time, peak_memory_gb

REPO = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"<!-- gpu-train:start -->.*<!-- gpu-train:end -->", re.S)
AUTOCAST_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Bench:
    accelerator: object
    model: object
    dual: object
    optimizer: object
    degrader: object
    degradation: object
    mixed_precision: str
    teacher_dtype: str
    flops_per_image: dict  # (stage, crop) -> model FLOPs of one step at batch 1
    extras: object = None  # the objective's step and the EMA (pisasr/training/aux.py)
    objective: str = "csd"

    @property
    def device(self) -> torch.device:
        return self.accelerator.device


def build(
    base: str,
    mixed_precision: str = "no",
    device: str = "auto",
    teacher_dtype: str | None = None,
    objective: str = "csd",
    vits: tuple[str, str] | None = None,
) -> Bench:
    """The training code's model and optimizer on ``base`` (teacher too), for both stages; the teacher's weights
    in ``teacher_dtype`` (default: the config's, fp32, run under the step's autocast)."""
    from accelerate import Accelerator

    from pisasr.config import load_config
    from pisasr.data.degradation import Degrader, load_degradation
    from pisasr.devices import resolve_device
    from pisasr.model.dual_lora import ADAPTERS
    from pisasr.training.loop import build_model
    from pisasr.training.objectives import build_extras
    from pisasr.training.optim import build_optimizer

    cfg = load_config(
        REPO / "configs/train_official_sd21.yaml",
        [f"model.base={base}", f"train.csd.teacher={base}", "train.lpips_vgg_pretrained=false",
         f"train.mixed_precision={mixed_precision!r}", *([f"train.csd.dtype={teacher_dtype}"] * bool(teacher_dtype)),
         f"train.sem_objective={objective}", *([f"train.add.dino={vits[0]}", f"train.add.dinov2={vits[1]}"] if vits else [])],
    )  # fmt: skip
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=resolve_device(device).type == "cpu")
    model, dual = build_model(cfg, accelerator, None, needs_sem=True)
    extras = build_extras(cfg, accelerator, model.objective, dual)
    params = [p for name in ADAPTERS for p in dual.adapter_parameters(name)]
    optimizer = accelerator.prepare(build_optimizer(params, cfg.train))
    degradation = load_degradation(REPO / cfg.data.degradation.config)
    degrader = Degrader(degradation, accelerator.device)
    return Bench(
        accelerator, model, dual, optimizer, degrader, degradation, mixed_precision, cfg.train.csd.dtype, {},
        extras, objective,
    )  # fmt: skip


def _batch(bench: Bench, batch: int, crop: int) -> tuple[torch.Tensor, dict]:
    from pisasr.data.degradation import sample_kernels

    gt = torch.rand(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0)).to(bench.device)
    rng = np.random.default_rng(0)
    samples = [sample_kernels(bench.degradation, rng) for _ in range(batch)]
    kernels = {k: torch.stack([s[k] for s in samples]).to(bench.device) for k in samples[0]}
    return gt, kernels


def _degrade(bench: Bench, gt: torch.Tensor, kernels: dict, generator: torch.Generator) -> torch.Tensor:
    from pisasr.data.degradation import training_input

    return training_input(bench.degrader, gt, kernels, generator, "random")


def _optimize(
    bench: Bench, stage: str, lq: torch.Tensor, gt: torch.Tensor, generator: torch.Generator
) -> None:
    """Losses, backward, clipping and AdamW, as one optimizer step of the training loop (one process), with the
    objective's own step before or after it."""
    acc, before = bench.accelerator, bench.extras.before_objective if bench.extras else None
    with acc.autocast():
        losses = bench.model.losses(
            stage, lq * 2 - 1, gt * 2 - 1, ["a photo"] * gt.shape[0], generator, before
        )
    context = losses.pop("context", None)
    acc.backward(losses["loss"])
    acc.clip_grad_norm_(bench.dual.trainable_parameters(), 1.0)
    bench.optimizer.step()
    bench.optimizer.zero_grad(set_to_none=True)
    if bench.extras is not None:
        bench.extras.after_generator_step(context, True)


def _step(bench: Bench, stage: str, gt: torch.Tensor, kernels: dict) -> None:
    generator = torch.Generator().manual_seed(1)
    _optimize(bench, stage, _degrade(bench, gt, kernels, generator), gt, generator)


def model_flops(bench: Bench, stage: str, crop: int) -> int:
    """FLOPs of one step at batch 1 without degradation, uncompiled and without recomputation."""
    key = (stage, crop)
    if key not in bench.flops_per_image:
        unet = bench.model.base.unet
        checkpointing = unet.is_gradient_checkpointing
        unet.disable_gradient_checkpointing()
        gt, kernels = _batch(bench, 1, crop)
        generator = torch.Generator().manual_seed(1)
        lq = _degrade(bench, gt, kernels, generator)
        model = bench.model  # the prompts' embeddings are cached in training: not part of a step
        model.embed([model.positive_prompt("a photo"), "", model.negative_prompt])
        with FlopCounterMode(display=False) as counter:
            _optimize(bench, stage, lq, gt, generator)
        bench.flops_per_image[key] = counter.get_total_flops()
        if checkpointing:
            unet.enable_gradient_checkpointing()
    return bench.flops_per_image[key]


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, n: int | None = None) -> float:
    n = n or (8192 if device.type == "cuda" else 1024)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = median_time(lambda: a @ b, repeats=10 if device.type == "cuda" else 3, warmup=2)
    return 2 * n**3 / seconds / 1e12


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _free(bench: Bench) -> None:
    bench.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if bench.device.type == "cuda":
        torch.cuda.empty_cache()


def measure(
    bench: Bench, stage: str, batch: int, crop: int, checkpointing: bool, compiled: bool, peak_tflops: float,
    repeats: int = 3, warmup: int = 1,
) -> dict:  # fmt: skip
    """One row: the step's time, throughput, peak memory, model FLOPs utilisation and the degradation's rate."""
    unet = bench.model.base.unet
    bench.dual.set_stage(stage)
    row = {"machine": machine(), "suite": "train_bench", "device": str(bench.device), "stage": stage,
           "batch": batch, "crop": crop, "mixed_precision": bench.mixed_precision,
           "teacher_dtype": bench.teacher_dtype,
           "gradient_checkpointing": checkpointing, "compiled": compiled,
           "objective": bench.objective if stage == "sem" else "-"}  # fmt: skip
    try:
        flops = model_flops(bench, stage, crop) * batch
        if checkpointing:
            unet.enable_gradient_checkpointing()
        else:
            unet.disable_gradient_checkpointing()
        gt, kernels = _batch(bench, batch, crop)
        _reset_peak(bench.device)
        seconds = median_time(lambda: _step(bench, stage, gt, kernels), repeats, max(warmup, 2 * compiled))
        generator = torch.Generator().manual_seed(1)
        degrade_s = median_time(lambda: _degrade(bench, gt, kernels, generator), repeats, 1)
    except torch.OutOfMemoryError:
        _free(bench)
        return {**row, "oom": True}
    row.update(
        ms_per_step=round(seconds * 1e3, 1),
        images_per_s=round(batch / seconds, 3),
        peak_memory_gb=round(peak_memory_gb(bench.device), 2),
        peak_is_rss=bench.device.type != "cuda",
        tflop_per_step=_significant(flops / 1e12),
        matmul_peak_tflops=_significant(peak_tflops),
        mfu=_significant(flops / seconds / (peak_tflops * 1e12)),
        degradation_images_per_s=round(batch / degrade_s, 2),
    )
    _free(bench)
    return row


def markdown(rows: list[dict]) -> str:
    """The table of ``rows`` (as appended to the JSONL log)."""
    lines = [
        "| stage | batch | precision | grad. ckpt | compiled UNet | ms / step | images/s | peak GB | TFLOP / step "
        "| MFU | matmul TFLOP/s | degradation images/s | objective |",
        "|" + " --- |" * 13,
    ]
    for r in rows:
        head = (
            f"| {r['stage']} | {r['batch']} | {r['mixed_precision']} | {_yes(r['gradient_checkpointing'])} | "
        )
        head += f"{_yes(r['compiled'])} |"
        if r.get("oom"):
            lines.append(head + " out of memory |" + " |" * 7 + f" {r.get('objective', 'csd')} |")
            continue
        lines.append(
            head + f" {r['ms_per_step']} | {r['images_per_s']:.3g} | {r['peak_memory_gb']} | "
            f"{r['tflop_per_step']:.3g} | {100 * r['mfu']:.1f}% | {r['matmul_peak_tflops']:.3g} | "
            f"{r['degradation_images_per_s']:.3g} | {r.get('objective', 'csd')} |"
        )
    return "\n".join(lines)


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def write_section(doc: Path, rows: list[dict], command: str) -> None:
    """Replace the GPU training section of ``doc`` (between its gpu-train markers) with the table of ``rows``."""
    first = rows[0]
    body = (
        f"<!-- gpu-train:start -->\nCommand: `{command}`; it rewrites this section.\n\nMachine: {first['machine']}; "
        f"crop {first['crop']}; model FLOPs utilisation against the measured matmul rate in the step's precision."
        f"\n\n{markdown(rows)}\n<!-- gpu-train:end -->"
    )
    text = doc.read_text()
    if not SECTION.search(text):
        raise SystemExit(f"{doc}: no <!-- gpu-train:start --> ... <!-- gpu-train:end --> section to replace")
    doc.write_text(SECTION.sub(lambda _: body, text))


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=".cache/random-sd21")
    p.add_argument("--device", default="auto")
    p.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--stage", "--stages", dest="stages", default="pix,sem", help="pix, sem or pix,sem")
    p.add_argument("--batches", default="1", help="per-device batch sizes, e.g. 1,4,8")
    p.add_argument("--teacher_dtype", choices=["fp32", "fp16", "bf16"], help="default: the config's (fp32)")
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--objective", default="csd", help="train.sem_objective: csd, vsd, add or a comma list")
    p.add_argument("--dino", default="random", help="add: DINO ViT-S/16 (hub id, folder, or random)")
    p.add_argument("--dinov2", default="random", help="add: DINOv2-S/14 (hub id, folder, or random)")
    p.add_argument(
        "--gradient_checkpointing", nargs="?", const="on", default="off", choices=["off", "on", "both"]
    )
    p.add_argument(
        "--compile", action="store_true", help="also time with the trained UNet under torch.compile"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--log", default="benchmarks/results/train_bench.jsonl")
    p.add_argument("--markdown", help="also write this invocation's table to this file")
    args = p.parse_args(argv)
    from pisasr.cli import quiet_libraries

    quiet_libraries()
    torch.set_flush_denormal(True)
    peak = matmul_peak_tflops(resolve_bench_device(args.device), AUTOCAST_DTYPES[args.mixed_precision])
    checkpointing = {"off": [False], "on": [True], "both": [False, True]}[args.gradient_checkpointing]
    rows = []
    for objective in args.objective.split(","):
        start = time.perf_counter()
        vits = _vits(args.dino, args.dinov2) if objective == "add" else None
        bench = build(args.base, args.mixed_precision, args.device, args.teacher_dtype, objective, vits)
        print(f"{objective}: built in {time.perf_counter() - start:.0f} s on {bench.device}", flush=True)
        rows += _grid(bench, args, checkpointing, peak)
        del bench
        gc.collect()
    table = markdown(rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


def resolve_bench_device(device: str) -> torch.device:
    from pisasr.devices import resolve_device

    return resolve_device(device)


def _vits(dino: str, dinov2: str) -> tuple[str, str]:
    """``random``: full-size random ViT-S/16 / DINOv2-S/14 under .cache/ (written once)."""
    from pisasr.model.tiny_vit import make_tiny_dino, make_tiny_dinov2

    if dino == "random":
        dino = str(REPO / ".cache/random-dino-vits16")
        if not Path(dino, "config.json").is_file():
            make_tiny_dino(dino, hidden=384)
    if dinov2 == "random":
        dinov2 = str(REPO / ".cache/random-dinov2-small")
        if not Path(dinov2, "config.json").is_file():
            make_tiny_dinov2(dinov2, hidden=384)
    return dino, dinov2


def _grid(bench: Bench, args, checkpointing: list[bool], peak: float) -> list[dict]:
    rows = []
    for compiled in (False, True) if args.compile else (False,):
        if compiled:
            bench.model.base.unet.compile()
        for stage in args.stages.split(","):
            for ckpt in checkpointing:
                for batch in _ints(args.batches):
                    row = measure(
                        bench, stage, batch, args.crop, ckpt, compiled, peak, args.repeats, args.warmup
                    )
                    append_row(args.log, row)
                    rows.append(row)
    return rows


if __name__ == "__main__":
    main()
