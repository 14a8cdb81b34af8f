"""``accelerate launch scripts/train.py --config configs/<name>.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
import os
import sys

from pisasr.cli import run_cli
from pisasr.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train PiSA-SR's pix and sem LoRA adapters.")
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/train_sd_turbo.yaml")
    parser.add_argument(
        "overrides", nargs="*", help="key=value, e.g. train.max_steps=100 train.resume_from_checkpoint=auto"
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    from pisasr.training.loop import run_training
    from pisasr.training.preemption import PREEMPTED_EXIT_CODE, Preempted

    try:
        final = run_training(cfg)
    except Preempted as stopped:
        if os.environ.get("RANK", "0") == "0":  # one line per run, not per process
            print(stopped, file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    print(f"adapters: {final}", file=sys.stderr)
    return 0


def entry() -> None:
    sys.exit(run_cli(main))
