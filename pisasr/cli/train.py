"""``accelerate launch scripts/train.py --config configs/<name>.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

from pisasr.cli import run_cli
from pisasr.training.preemption import (
    BEFORE_CONFIG,
    PREEMPTED_EXIT_CODE,
    Preempted,
    PreemptedBeforeStart,
    PreemptionWatch,
    mark_finished,
    mark_preempted,
)


def main(argv: list[str] | None = None, exiting: bool = False) -> int:
    # preemption signals are handled from the first line (pisasr.training.preemption): while loading, one ends the
    # run with exit 75 and nothing to save; after the last step, it lets final/ be written and the run ends with 0
    watch = PreemptionWatch(BEFORE_CONFIG, phase="loading").install()
    try:
        return _main(argv, watch)
    except PreemptedBeforeStart as stopped:
        mark_preempted(stopped)
        if os.environ.get("RANK", "0") == "0":
            print(stopped, file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    finally:
        watch.restore(ignore=exiting)  # a command's process exits next: a late signal must not kill it


def _main(argv: list[str] | None, watch: PreemptionWatch) -> int:
    from pisasr.config import load_config

    parser = argparse.ArgumentParser(description="Train PiSA-SR's pix and sem LoRA adapters.")
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/train_sd_turbo.yaml")
    parser.add_argument(
        "overrides", nargs="*", help="key=value, e.g. train.max_steps=100 train.resume_from_checkpoint=auto"
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    watch.handle_instead(list(cfg.train.preempt_signals))
    main_process = os.environ.get("RANK", "0") == "0"  # one line per run, not per process
    try:
        from pisasr.training.loop import run_training

        final = run_training(cfg, watch)
        mark_finished(final)
    except Preempted as stopped:  # (marked for the launch wrapper where its checkpoint was written)
        if main_process:
            print(stopped, file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    if main_process:
        print(f"adapters: {final}", file=sys.stderr)
    return 0


def entry() -> None:
    sys.exit(run_cli(partial(main, exiting=True)))
