"""Convert an official PiSA-SR ``.pkl`` into a pisasr safetensors checkpoint folder."""

from __future__ import annotations

import argparse
import sys

from pisasr.cli import run_cli
from pisasr.config import SD21_BASE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pkl", help="official checkpoint, e.g. pisa_sr.pkl")
    parser.add_argument("out_dir", help="folder for pisasr_adapters.safetensors (+ .json)")
    parser.add_argument(
        "--base", default=SD21_BASE, help=f"base model recorded in the metadata (default {SD21_BASE})"
    )
    args = parser.parse_args(argv)
    from pisasr.model.checkpoint import convert_official

    out = convert_official(args.pkl, args.out_dir, base_model=args.base)
    print(out)
    return 0


def entry() -> None:
    sys.exit(run_cli(main))
