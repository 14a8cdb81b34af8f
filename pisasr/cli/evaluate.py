"""``python scripts/evaluate.py --sr DIR [--gt DIR] [--metrics psnr ssim lpips ocr_cer ...] [--out results.json]``.

Without ``--out`` the results go beside the SR folder (``DIR_metrics.json`` and ``DIR_metrics.csv``)."""

from __future__ import annotations

import argparse
import sys

from pisasr.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    from pisasr.evaluation.metrics import NO_REFERENCE, PAPER_METRICS

    p = argparse.ArgumentParser(description="Score SR images with pyiqa metrics (paper protocol).")
    p.add_argument("--sr", required=True, help="folder of SR images")
    p.add_argument(
        "--gt", help="folder of GT images (matched by file name); without it, no-reference metrics only"
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        help=f"pyiqa names or ocr_cer (default: {' '.join(PAPER_METRICS)}; without --gt: {' '.join(NO_REFERENCE)})",
    )
    p.add_argument(
        "--text_labels",
        metavar="FILE",
        help="ocr_cer's references: one 'name<TAB>text' per line (default: the text read in the GT images)",
    )
    p.add_argument(
        "--out",
        help="JSON of means, a per-image CSV beside it (default: beside the SR folder, SR_metrics.json)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--batch_size", type=int, default=8)
    args = p.parse_args(argv)
    from pisasr.devices import resolve_device
    from pisasr.evaluation.metrics import default_out, evaluate, markdown_table, write_reports

    result = evaluate(
        args.sr,
        args.gt,
        args.metrics,
        resolve_device(args.device),
        args.batch_size,
        text_labels=args.text_labels,
    )
    metrics = list(result.means) + list(result.unavailable)
    print(markdown_table({args.sr: {m: result.means.get(m) for m in metrics}}, metrics))
    for name, reason in result.unavailable.items():
        print(f"unavailable: {name}: {reason}", file=sys.stderr)
    for name, skipped in result.skipped.items():
        if skipped:
            print(
                f"note: {name}: {len(skipped)} image(s) left out of the mean (reasons in the CSV)",
                file=sys.stderr,
            )
    out_json, out_csv = write_reports(result, args.out or default_out(args.sr), metrics)
    print(f"wrote {out_json} and {out_csv}", file=sys.stderr)
    return 0


def entry() -> None:
    sys.exit(run_cli(main))
