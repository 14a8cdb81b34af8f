"""``python scripts/reproduce.py --data_root DIR --base MODEL --weights CKPT [--sets RealSR,DRealSR,DIV2K-Val]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from pisasr.cli import run_cli
from pisasr.errors import ConfigError
from pisasr.io.files import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    from pisasr.evaluation.metrics import PAPER_METRICS
    from pisasr.evaluation.reproduce import DEFAULT_SETS, PUBLISHED

    p = argparse.ArgumentParser(
        description="Run PiSA-SR on the paper's test sets and compare with published numbers."
    )
    p.add_argument(
        "--data_root", required=True, help="folder holding one folder per test set, each with LR/ and HR/"
    )
    p.add_argument("--base", help="base model (default: the config's)")
    p.add_argument("--weights", help="pisasr checkpoint or official .pkl")
    p.add_argument("--config", default="configs/official_sd21.yaml")
    p.add_argument("--sets", default=",".join(DEFAULT_SETS))
    p.add_argument("--out", default="outputs/reproduce")
    p.add_argument("--metrics", nargs="+", default=list(PAPER_METRICS))
    p.add_argument(
        "--extra", nargs="*", default=[], help="NAME=DIR: score another method's outputs (DIR/<set> or DIR)"
    )
    p.add_argument(
        "--lambda_grid", help="'PIX,PIX:SEM,SEM': evaluate every pair and plot the trade-off curve"
    )
    p.add_argument(
        "--published",
        default=str(PUBLISHED),
        help="YAML of published numbers to print beside ours (format: the shipped file's header)",
    )
    p.add_argument("--grid_metrics", nargs=2, default=["psnr", "lpips"], metavar=("X", "Y"))
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32")
    args = p.parse_args(argv)

    from pisasr.config import load_config
    from pisasr.devices import resolve_device
    from pisasr.evaluation.metrics import check_metric_names, evaluate, markdown_table
    from pisasr.evaluation.reproduce import (
        comparison_rows,
        evaluate_grid,
        grid_report,
        load_published,
        locate_set,
        provenance,
        run_grid,
        run_set,
        score_extras,
    )
    from pisasr.inference.pipeline import Pipeline
    from pisasr.inference.sweep import parse_sweep

    overrides = [f"inference.device={args.device}", f"inference.dtype={args.dtype}"]
    cfg = load_config(args.config, overrides)
    if args.base:
        cfg.model.base = args.base
    if args.weights:
        cfg.model.weights = args.weights
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    located = {name: locate_set(args.data_root, name) for name in sets}  # fail before loading the model
    published = load_published(args.published)
    extras = {}
    for item in args.extra:
        name, _, folder = item.partition("=")
        if not folder:
            raise ConfigError(f"--extra {item!r} must be NAME=DIR")
        if not Path(folder).is_dir():
            raise ConfigError(f"--extra {item!r}: folder {folder} not found")
        extras[name] = Path(folder)
    check_metric_names([*args.metrics, *args.grid_metrics])  # a typo stops the run before any inference
    pipe = Pipeline.from_config(cfg)
    device = resolve_device(args.device)
    out_root = Path(args.out)
    summary, report = {}, []
    for name, (lr_dir, hr_dir) in located.items():
        sr_dir = run_set(pipe, lr_dir, out_root / name / "pisasr")
        metrics = list(args.metrics)
        ours = evaluate(sr_dir, hr_dir, metrics, device)
        extra_rows, extra_notes = score_extras(extras, name, hr_dir, metrics, device)
        rows = comparison_rows({m: ours.means.get(m) for m in metrics}, name, published, extra_rows, metrics)
        report.append(f"## {name}\n\n{markdown_table(rows, metrics)}\n")
        report.extend(provenance(published, name))
        report.extend(extra_notes)
        if not any(name in entry["results"] for entry in published.values()):
            report.append(f"- no published numbers for {name} in {args.published}\n")
        for metric, reason in ours.unavailable.items():
            report.append(f"- {metric} unavailable: {reason}\n")
        summary[name] = {"ours": ours.to_json(), "rows": rows}
        if args.lambda_grid:
            pix, sem = parse_sweep(args.lambda_grid)
            folders = run_grid(pipe, lr_dir, out_root / name / "grid", [(a, b) for a in pix for b in sem])
            points, unavailable = evaluate_grid(folders, hr_dir, list(args.grid_metrics), device)
            summary[name]["grid"] = {f"{a:g},{b:g}": v for (a, b), v in points.items()}
            report.append(
                grid_report(
                    points,
                    unavailable,
                    *args.grid_metrics,
                    out_root / name / "tradeoff.png",
                    f"PiSA-SR on {name}",
                )
            )
    text = "\n".join(report)
    print(text)
    atomic_write_text(out_root / "summary.md", text)
    atomic_write_text(
        out_root / "summary.json",
        json.dumps(
            {"config": OmegaConf.to_container(cfg, resolve=True), "sets": summary}, indent=2, default=str
        ),
    )
    print(f"wrote {out_root / 'summary.md'} and {out_root / 'summary.json'}", file=sys.stderr)
    return 0


def entry() -> None:
    sys.exit(run_cli(main))
