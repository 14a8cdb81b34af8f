"""``python scripts/export.py --config CFG --weights W --to FORMAT -o OUT [--lambda_pix A --lambda_sem B]``.

Exports a pisasr checkpoint (folder, ``.safetensors``, a run's ``final/``) or an official ``.pkl`` on the config's
base to ``official`` (.pkl), ``lora`` (diffusers LoRA folders), ``diffusers`` (merged UNets) or ``onnx``; see
``pisasr.export`` and docs/export.md.
"""

from __future__ import annotations

import argparse
import sys

from pisasr.cli import apply_flags, run_cli
from pisasr.config import load_config

FLAGS = {
    "weights": "model.weights",
    "base": "model.base",
    "prompt": "inference.prompt",
}


def build_parser() -> argparse.ArgumentParser:
    from pisasr.export import FORMATS

    p = argparse.ArgumentParser(
        description="Export PiSA-SR adapters to the official, diffusers or ONNX formats."
    )
    p.add_argument("--config", help="YAML config; its model.base is the base the export is built on")
    p.add_argument("--weights", help="pisasr checkpoint (folder or .safetensors) or official .pkl")
    p.add_argument("--base", help="base model (overrides the config's): hub id or local diffusers folder")
    p.add_argument("--to", required=True, help=f"format: {', '.join(FORMATS)}")
    p.add_argument("-o", "--output", required=True, help="OUT.pkl for official, else a new folder")
    p.add_argument("--lambda_pix", type=float, help="diffusers/onnx: pixel-level strength to build in")
    p.add_argument("--lambda_sem", type=float, help="diffusers/onnx: semantic-level strength to build in")
    p.add_argument("--prompt", help="prompt whose embedding is built in (default: empty, as the paper)")
    p.add_argument("overrides", nargs="*", help="config overrides key=value")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    apply_flags(cfg, args, FLAGS)
    from pisasr.export import export

    print(export(cfg, args.to, args.output, args.lambda_pix, args.lambda_sem))
    return 0


def entry() -> None:
    sys.exit(run_cli(main))
