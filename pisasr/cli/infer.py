"""``python scripts/infer.py -i INPUT -o OUTDIR --lambda_pix 1.0 --lambda_sem 1.0 [--config ...] [key=value ...]``.

Flags override the YAML config (``--config``), and trailing ``key=value`` pairs override both. Under
``accelerate launch`` with N processes the inputs are split across processes; each output is written once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from pisasr.cli import apply_flags, run_cli
from pisasr.cli.regions import add_region_flags
from pisasr.config import load_config
from pisasr.errors import ConfigError, plural

# flag -> config key
FLAGS = {
    "input": "inference.input",
    "output": "inference.output_dir",
    "lambda_pix": "inference.lambda_pix",
    "lambda_sem": "inference.lambda_sem",
    "sweep": "inference.sweep",
    "weights": "model.weights",
    "base": "model.base",
    "upscale": "inference.upscale",
    "process_size": "inference.process_size",
    "color_fix": "inference.color_fix",
    "latent_tile": "inference.latent_tile",
    "latent_tile_overlap": "inference.latent_tile_overlap",
    "tile_batch": "inference.tile_batch",
    "vae_tile": "inference.vae_tile",
    "vae_sample": "inference.vae_sample",
    "seed": "inference.seed",
    "prompt": "inference.prompt",
    "device": "inference.device",
    "dtype": "inference.dtype",
    "skip_existing": "inference.skip_existing",
    "suffix": "inference.suffix",
    "ext": "inference.ext",
    "resample": "inference.resample",
    "batch_size": "inference.batch_size",
    "io_workers": "inference.io_workers",
    "compile": "inference.compile",
    "pix_unet": "inference.pix_unet",
    "allow_base_mismatch": "model.allow_base_mismatch",
    "mask": "inference.mask",
    "lambda_inside": "inference.lambda_inside",
    "lambda_outside": "inference.lambda_outside",
    "feather": "inference.feather",
    "save_masks": "inference.save_masks",
    "protect": "inference.protect",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="PiSA-SR super-resolution with adjustable pixel/semantic strength."
    )
    p.add_argument("-i", "--input", help="image file, folder of images, or .txt list of paths")
    p.add_argument("-o", "--output", help="output folder (default outputs/infer)")
    p.add_argument("--config", help="YAML config (default: built-in SD-Turbo defaults)")
    p.add_argument("--weights", help="pisasr checkpoint (folder or .safetensors) or official .pkl")
    p.add_argument("--base", help="base model: hub id or local diffusers folder")
    p.add_argument("--lambda_pix", type=float, help="pixel-level (fidelity) strength, default 1.0")
    p.add_argument("--lambda_sem", type=float, help="semantic-level (detail) strength, default 1.0")
    p.add_argument("--sweep", help="grid 'PIX,PIX,...:SEM,SEM,...': one image per pair plus a contact sheet")
    p.add_argument("--upscale", type=int)
    p.add_argument("--process_size", type=int)
    p.add_argument("--color_fix", choices=["adain", "wavelet", "none"])
    p.add_argument("--latent_tile", type=int, help="UNet tile in latent pixels (default 96)")
    p.add_argument("--latent_tile_overlap", type=int, help="tile overlap in latent pixels (default 32)")
    p.add_argument("--tile_batch", type=int, help="tiles per UNet call (default 1)")
    p.add_argument("--vae_tile", type=int, help="VAE tile in image pixels (default 1024)")
    p.add_argument(
        "--vae_sample", action="store_true", default=None, help="sample the VAE posterior (with --seed)"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--prompt", help="text prompt (default: empty, as the paper)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"])
    p.add_argument(
        "--skip_existing", action="store_true", default=None, help="skip inputs whose outputs exist"
    )
    p.add_argument(
        "--resample", choices=["pil", "torch"], help="upsampling: pil (official, default) or torch"
    )
    p.add_argument("--batch_size", type=int, help="images of the same size per model call (default 1)")
    p.add_argument("--io_workers", type=int, help="reader/writer threads overlapping the model (default 2)")
    p.add_argument(
        "--compile", action="store_true", default=None, help="torch.compile UNet and VAE (cached across runs)"
    )
    p.add_argument(
        "--pix_unet", choices=["auto", "subtract", "copy"], help="eps_pix by subtraction or a second UNet"
    )
    p.add_argument(
        "--allow_base_mismatch",
        action="store_true",
        default=None,
        help="run adapters on a base other than the one they were trained on",
    )
    p.add_argument("--suffix", help="added to each output's name, e.g. _x4 (a.png -> a_x4.png)")
    p.add_argument(
        "--ext", choices=["png", "jpg", "webp"], help="output format (default png; jpg/webp are 8-bit)"
    )
    add_region_flags(p)
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. inference.vae_tile=512")
    return p


def resolve_config(argv: list[str] | None):
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    apply_flags(cfg, args, FLAGS)
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = resolve_config(argv)
    o = cfg.inference
    if not o.input:
        raise ConfigError(
            "no input given: pass -i FILE|FOLDER|LIST.txt (or set inference.input in the config)"
        )

    from accelerate import PartialState

    from pisasr.devices import resolve_device
    from pisasr.inference.batch import BatchSummary, package_versions, run_batch
    from pisasr.inference.outputs import (
        RECORD_NAME,
        OutputNaming,
        RunRecord,
        refuse_overwriting_inputs,
        unique_inputs,
        without_earlier_outputs,
    )
    from pisasr.inference.pipeline import UNTRAINED_NOTE, Pipeline
    from pisasr.inference.sweep import parse_sweep
    from pisasr.io.files import check_writable, remove_stale_partials
    from pisasr.io.images import list_inputs
    from pisasr.model.checkpoint import file_sha256, resolve_weights_file
    from pisasr.regions.files import RegionPlan

    out_dir = Path(o.output_dir)
    naming = OutputNaming(o.suffix, o.ext)
    inputs, earlier = without_earlier_outputs(list_inputs(o.input), out_dir)
    inputs = unique_inputs(inputs, naming)
    plan = RegionPlan.from_options(o, out_dir)
    if o.sweep:
        axes = parse_sweep(o.sweep)
        pairs = [(p, s) for p in axes[0] for s in axes[1]]
    else:
        axes, pairs = None, [(float(o.lambda_pix), float(o.lambda_sem))]
    targets = [naming.targets(p.stem, out_dir, pairs, axes is not None) for p in inputs]
    if plan:
        targets += [plan.map_files(p.stem) for p in inputs]
    masks = [plan.mask] if plan and plan.mask and plan.mask.is_file() else []
    masks += list(plan.by_stem.values()) if plan and plan.by_stem else []
    refuse_overwriting_inputs(inputs + masks, targets, o.suffix)  # a mask is the user's file too
    check_writable(out_dir)

    # On a machine without an accelerator, `accelerate launch --multi_gpu` processes join a gloo (CPU) group only
    # when asked for the CPU explicitly.
    state = PartialState(cpu=resolve_device(o.device).type == "cpu")
    if o.device == "auto" and state.num_processes > 1:
        cfg.inference.device = str(state.device)
    pipe = Pipeline.from_config(cfg)
    record = None
    if state.is_main_process:
        # temporary files of earlier runs into this folder that were killed (SIGKILL) before they could clean up
        stale = remove_stale_partials(out_dir, {t.name for paths in targets for t in paths} | {RECORD_NAME})
        if stale:
            print(f"note: removed {plural(len(stale), 'partial file')} left by a killed run", file=sys.stderr)
        if earlier:
            print(
                f"note: {plural(earlier, 'file')} in the input folder "
                f"{'is an earlier output' if earlier == 1 else 'are earlier outputs'} (run.json): left out",
                file=sys.stderr,
            )
        if not cfg.model.weights:
            print(f"note: {UNTRAINED_NOTE}", file=sys.stderr)
        weights = cfg.model.weights
        record = RunRecord(
            out_dir,
            {
                "command": sys.argv,
                "config": OmegaConf.to_container(cfg, resolve=True),
                "weights_sha256": file_sha256(resolve_weights_file(weights)) if weights else None,
                "device": str(pipe.device),
                "dtype": str(pipe.dtype),
                "num_processes": state.num_processes,
                "versions": package_versions(),
                "regions": plan.record(inputs) if plan else None,
            },
        )
    status = "interrupted"
    summary = BatchSummary()  # filled as images land, so an interrupted run still has it
    try:  # from the record's first write on: a stop signal or Ctrl-C completes it as interrupted
        if plan:
            plan.saved = summary.written  # saved maps count as written on every process (gathered below)
        if state.use_distributed:
            state.wait_for_everyone()  # the stale files are gone before any process writes
        run_batch(
            pipe,
            inputs[state.process_index :: state.num_processes],
            out_dir,
            pairs,
            axes,
            skip_existing=o.skip_existing,
            show_progress=state.is_main_process,
            batch_size=o.batch_size,
            io_workers=o.io_workers,
            naming=naming,
            quality=o.quality,
            summary=summary,
            regions=plan.spec_for if plan else None,
            side_files=plan.map_files if plan else None,
        )
        if state.num_processes > 1:
            from accelerate.utils import gather_object

            parts = gather_object([summary])
            summary = parts[0]
            for part in parts[1:]:
                summary.merge(part)
        status = "finished"
    finally:
        if record is not None:  # what this run wrote, with these settings; also when it was interrupted
            record.finish(
                status,
                written=sorted(summary.written),
                skipped_existing=sorted(summary.skipped_outputs),
                failed=sorted(message for _, message in summary.failures),
            )
    if state.is_main_process:
        print(summary.report(), file=sys.stderr)
    if state.use_distributed:
        state.wait_for_everyone()
        state.destroy_process_group()  # else gloo's threads can abort the process at interpreter exit
    return 1 if summary.failures else 0


def entry() -> None:
    sys.exit(run_cli(main, stop_signals=True))  # SIGTERM/SIGHUP as Ctrl-C: exit 128 + signal number


if __name__ == "__main__":
    entry()
