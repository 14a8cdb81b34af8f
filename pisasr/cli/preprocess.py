"""Command-line tools behind ``preprocess/*.py``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pisasr.cli import run_cli


def make_file_list_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Scan folders of GT images into a list file (one path per line).")
    p.add_argument("folders", nargs="+")
    p.add_argument("-o", "--out", required=True, help="list file to write")
    p.add_argument(
        "--min_size", type=int, default=512, help="drop images whose short side is smaller (default 512)"
    )
    p.add_argument("--dedupe", choices=["content", "path"], default="content")
    args = p.parse_args(argv)
    from pisasr.data.prep import make_file_list

    files, dropped = make_file_list(args.folders, args.min_size, args.dedupe)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(f"{f}\n" for f in files))
    print(f"{len(files)} images -> {args.out}; dropped " + ", ".join(f"{v} {k}" for k, v in dropped.items()))
    return 0


def make_test_pairs_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Synthesise LR/HR test pairs (StableSR DIV2K-Val protocol).")
    p.add_argument("hr_dir")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", type=int, default=512, help="HR crop size (LR is crop / scale)")
    p.add_argument(
        "--degradation",
        default="configs/degradation/stablesr_div2k_val.yaml",
        help="degradation YAML: StableSR's DIV2K-Val settings (default) or configs/degradation/realesrgan.yaml "
        "(the training degradation)",
    )
    args = p.parse_args(argv)
    from pisasr.data.degradation import load_degradation
    from pisasr.data.prep import make_test_pairs

    written, skipped = make_test_pairs(
        args.hr_dir, args.out_dir, load_degradation(args.degradation), args.seed, args.crop
    )
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    print(f"{written} pairs -> {args.out_dir}/HR, {args.out_dir}/LR ({len(skipped)} skipped)")
    return 0 if written else 1


def extract_prompts_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Write per-image prompts (JSONL) with a transformers model; resumable."
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--list", help="list file of GT images")
    src.add_argument("--dir", help="folder of GT images")
    p.add_argument("-o", "--out", required=True, help="JSONL to write (appended to when resuming)")
    p.add_argument("--task", choices=["caption", "tags"], default="caption")
    p.add_argument(
        "--model", help="hub id or local folder (default: BLIP-large for caption, CLIP-L/14 for tags)"
    )
    p.add_argument(
        "--tags", help="tag vocabulary file, one tag per line (task tags; default: pisasr's built-in list)"
    )
    p.add_argument("--top_k", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    from pisasr.data.datasets import read_file_list, scan_folder
    from pisasr.data.prompts import extract_prompts
    from pisasr.data.tagging import read_vocabulary
    from pisasr.devices import resolve_device

    files = read_file_list(args.list) if args.list else scan_folder(args.dir)
    tags = read_vocabulary(args.tags) if args.task == "tags" else []
    added = extract_prompts(
        files,
        args.out,
        args.task,
        args.model,
        tags,
        args.top_k,
        args.batch_size,
        str(resolve_device(args.device)),
    )
    print(f"{added} prompts added -> {args.out}")
    return 0


def entry(main) -> None:
    sys.exit(run_cli(main))
