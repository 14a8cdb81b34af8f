"""GPU inference suite: model time per mode (eager and compiled), batch throughput, CLI throughput, and the
official code side by side when a copy of it is given. Every pisasr figure comes from ``Pipeline`` / ``run_batch``.

    python -m benchmarks.gpu_bench --base .cache/random-sd21 --weights .cache/random-sd21/pisa_sr.pkl \
        [--official DIR] [--markdown BENCHMARKS_GPU.md]
    bash benchmarks/run_gpu.sh          # the whole suite on the full-size random base, table into BENCHMARKS.md

Times are milliseconds per image with three significant digits (median of --repeats after --warmup,
synchronised), "model time" = encode + UNet pass(es) + decode on an already upsampled input, as the official
script's own timer. Peak memory is ``torch.cuda.max_memory_allocated`` (RSS on the CPU). It runs on the CPU too
(``--device cpu`` with the tiny base) to check the script itself; only CUDA figures mean anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmarks.common import append_row, machine, median_time, peak_memory_gb
from benchmarks.infer_bench import image
from pisasr.cli import quiet_libraries
from pisasr.inference.batch import run_batch
from pisasr.inference.pipeline import Pipeline
from pisasr.io.images import save_image

MODES = {"default (1, 1)": (1.0, 1.0), "adjustable (0.5, 1.5)": (0.5, 1.5), "pix only (1, 0)": (1.0, 0.0)}


def ms(seconds: float) -> str:
    """Milliseconds with three significant digits, never in exponent form (0.0731 s -> "73.1")."""
    value = seconds * 1e3
    if not math.isfinite(value) or value <= 0:
        return "n/a"
    return f"{value:.{max(0, 2 - math.floor(math.log10(value)))}f}"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def model_times(pipe: Pipeline, size: int, args) -> dict[str, tuple[float, float]]:
    """Mode -> (seconds per image, peak GB) for batch 1."""
    prepared = [pipe.prepare(image(size))]
    out = {}
    for name, pair in MODES.items():
        reset_peak(pipe.device)
        seconds = median_time(
            lambda pair=pair: pipe.decode(pipe.predict(prepared, [pair]).combine(*pair)),
            args.repeats,
            args.warmup,
        )
        out[name] = (seconds, peak_memory_gb(pipe.device))
    return out


def batch_throughput(pipe: Pipeline, size: int, batch: int, args) -> float:
    """Images per second of the default mode at ``batch`` images per call (model only)."""
    prepared = [pipe.prepare(image(size))] * batch
    seconds = median_time(
        lambda: pipe.decode(pipe.predict(prepared).combine(1.0, 1.0)), args.repeats, args.warmup
    )
    return batch / seconds


def cli_throughput(pipe: Pipeline, size: int, batch: int, args) -> float:
    """Images per second of ``run_batch`` over a folder (reading, colour fix and PNG writing included)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        paths = []
        for i in range(args.images):
            paths.append(save_image(image(size).rgb, folder / f"{i:03d}.png"))
        run_batch(
            pipe, paths[:batch], Path(tmp) / "warm", [(1.0, 1.0)], show_progress=False, batch_size=batch
        )
        summary = run_batch(
            pipe, paths, Path(tmp) / "out", [(1.0, 1.0)], show_progress=False, batch_size=batch,
            io_workers=args.io_workers,
        )  # fmt: skip
    return summary.done / summary.seconds


def official_times(args, size: int) -> dict[str, float]:
    """The official ``PiSASR_eval`` on the same base and checkpoint (CUDA only: it hard-codes the device)."""
    root = Path(args.official).resolve()
    sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location("official_pisasr", root / "pisasr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.nn.functional.interpolate(image(size).rgb[None], scale_factor=4, mode="bicubic").clamp(0, 1)
    out = {}
    for name, (lp, ls) in MODES.items():
        default = (lp, ls) == (1.0, 1.0)
        model = module.PiSASR_eval(
            SimpleNamespace(
                pretrained_model_path=args.base, pretrained_path=args.weights, mixed_precision=args.dtype,
                vae_encoder_tiled_size=1024, vae_decoder_tiled_size=224, latent_tiled_size=96,
                latent_tiled_overlap=32, default=default, lambda_pix=lp, lambda_sem=ls,
            )
        )  # fmt: skip
        model.set_eval()
        c_t = (x * 2 - 1).to(model.device)  # the official class fixes its own device
        out[name] = median_time(
            lambda m=model, d=default, c=c_t: m(d, c, prompt=""), args.repeats, args.warmup
        )
        del model
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=".cache/random-sd21")
    p.add_argument("--weights", default=".cache/random-sd21/pisa_sr.pkl")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp16")
    p.add_argument("--size", type=int, default=128, help="LR input size (output is 4x)")
    p.add_argument("--images", type=int, default=16, help="images in the CLI throughput folder")
    p.add_argument("--batch_sizes", default="1,4,8,16")
    p.add_argument("--io_workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no_compile", action="store_true", help="skip the compiled rows")
    p.add_argument("--pix_unet", default="auto", choices=["auto", "subtract", "copy"])
    p.add_argument("--official", help="a checkout of the official PiSA-SR code to time side by side")
    p.add_argument("--markdown", help="write the tables to this file")
    p.add_argument("--log", default="benchmarks/results/gpu.jsonl")
    args = p.parse_args(argv)
    quiet_libraries()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rows, throughput = {}, {}
    for compiled in (False,) if args.no_compile else (False, True):
        pipe = Pipeline.from_pretrained(
            args.base, args.weights, device=args.device, dtype=args.dtype, compile=compiled,
            pix_unet=args.pix_unet, allow_base_mismatch=True,
        )  # fmt: skip
        label = "compiled" if compiled else "eager"
        rows[label] = model_times(pipe, args.size, args)
        throughput[label] = {
            b: (batch_throughput(pipe, args.size, b, args), cli_throughput(pipe, args.size, b, args))
            for b in batches
        }
        device, model_size = pipe.device, pipe.prepare(image(args.size)).geometry.model_size
        del pipe
    official = official_times(args, args.size) if args.official else {}
    lines = [
        f"Machine: {machine()}; {args.dtype}; {args.size}x{args.size} -> {4 * args.size}x{4 * args.size} "
        f"(restored at {model_size[1]}x{model_size[0]}); median of {args.repeats} after {args.warmup} warm-up.",
        "",
        "| mode | official ms | pisasr eager ms | pisasr compiled ms | eager / official | compiled / official "
        "| peak GB (eager) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in MODES:
        eager_s, peak = rows["eager"][name]
        comp_s = rows.get("compiled", {}).get(name, (float("nan"), 0))[0]
        off = official.get(name, float("nan"))
        lines.append(
            f"| {name} | {ms(off)} | {ms(eager_s)} | {ms(comp_s)} | {eager_s / off:.2f} | {comp_s / off:.2f} "
            f"| {peak:.2f} |"
        )
    lines += ["", "| batch | eager img/s (model) | eager img/s (CLI) | compiled img/s (model) | compiled img/s (CLI) |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for b in batches:
        e = throughput["eager"][b]
        c = throughput.get("compiled", {}).get(b, (float("nan"), float("nan")))
        lines.append(f"| {b} | {e[0]:.3g} | {e[1]:.3g} | {c[0]:.3g} | {c[1]:.3g} |")
    table = "\n".join(lines)
    print(table)
    record = {"machine": machine(), "device": str(device), "rows": rows, "throughput": throughput,
              "official": official, "args": vars(args)}  # fmt: skip
    append_row(args.log, record)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
