"""Image-quality metrics through pyiqa, folder against folder, with the paper's protocol, and ``ocr_cer``
(``pisasr.evaluation.ocr``: the character error rate of the text read in the SR image).

PSNR and SSIM are computed on the Y channel of YCbCr without border crop (pyiqa ``test_y_channel=True,
color_space='ycbcr'``), as in the PiSA-SR / OSEDiff evaluations. A metric whose weights cannot be obtained (an
offline machine) is reported as unavailable, with where its weights belong, and the others are still computed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from pisasr.errors import ConfigError
from pisasr.evaluation.ocr import OCR_METRICS
from pisasr.io.files import atomic_write_text
from pisasr.io.images import list_inputs, read_image

PAPER_METRICS = ("psnr", "ssim", "lpips", "dists", "fid", "niqe", "musiq", "maniqa-pipal", "clipiqa")
NO_REFERENCE = ("niqe", "musiq", "maniqa-pipal", "clipiqa")
METRIC_KWARGS = {
    "psnr": {"test_y_channel": True, "color_space": "ycbcr"},
    "ssim": {"test_y_channel": True, "color_space": "ycbcr"},
}
LOWER_IS_BETTER = {"lpips", "dists", "fid", "niqe", "ocr_cer"}


@dataclass
class EvalResult:
    means: dict[str, float | None] = field(default_factory=dict)  # None: every image was left out
    per_image: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    unavailable: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # metric -> image -> why it was left out
    notes: dict[str, dict[str, str]] = field(
        default_factory=lambda: defaultdict(dict)
    )  # image -> column -> text

    def to_json(self) -> dict:
        out = {name: self.means.get(name) for name in list(self.means) + list(self.unavailable)}
        if self.unavailable:
            out["_unavailable"] = dict(self.unavailable)
        if self.skipped:
            out["_counts"] = {
                m: {"scored": sum(m in v for v in self.per_image.values()), "skipped": len(self.skipped[m])}
                for m in self.skipped
            }
            out["_skipped"] = {m: dict(sorted(images.items())) for m, images in self.skipped.items()}
        return out


def check_metric_names(metrics: list[str]) -> None:
    """Unknown names are a ``ConfigError`` naming the closest and the valid ones (before anything is computed)."""
    import difflib

    import pyiqa

    known = [*pyiqa.list_models(), *OCR_METRICS]
    unknown = [m for m in metrics if m not in known]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, 1)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise ConfigError(
        f"unknown metric(s) {', '.join(hints)}: the paper's are {', '.join(PAPER_METRICS)}; "
        f"pyiqa's {len(known)} are {', '.join(known)}"
    )


def is_no_reference(name: str) -> bool:
    if name in NO_REFERENCE:
        return True
    if name in OCR_METRICS:
        return False
    import pyiqa

    return name != "fid" and name in pyiqa.list_models(metric_mode="NR")


def weights_dir() -> str:
    from pyiqa.utils.download_util import DEFAULT_CACHE_DIR

    return DEFAULT_CACHE_DIR


def sr_images(sr_dir: str | Path) -> dict[str, Path]:
    """The SR folder's results by the stem of their input.

    A folder written by ``scripts/infer.py`` (it holds ``run.json``) is read as that record says: the images its
    runs wrote, without the contact sheets and ``--save_masks`` maps beside them, and with each run's ``--suffix``
    taken off the name (``a_x4.png`` is the result for ``a``). Any other folder: every image, by stem.
    """
    from pisasr.inference.outputs import RECORD_NAME

    folder = Path(sr_dir)
    try:
        runs = json.loads((folder / RECORD_NAME).read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return {p.stem: p for p in list_inputs(folder)}
    found: dict[str, Path] = {}
    for run in runs:
        suffix = (run.get("config") or {}).get("inference", {}).get("suffix", "") or ""
        for name in run.get("written") or []:
            path = folder / name
            stem = path.stem
            if not path.is_file() or path.suffix == ".tiff" or stem.endswith("_sweep"):
                continue
            found[stem[: -len(suffix)] if suffix and stem.endswith(suffix) else stem] = path
    return found or {p.stem: p for p in list_inputs(folder)}


def match_pairs(sr_dir: str | Path, gt_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, sr, gt) matched by file stem; unmatched names or differing sizes are one error listing them."""
    sr = sr_images(sr_dir)
    gt = {p.stem: p for p in list_inputs(gt_dir)}
    only_sr, only_gt = sorted(set(sr) - set(gt)), sorted(set(gt) - set(sr))
    if only_sr or only_gt:
        # the files, not their stems: an SR file named a_x4.png pairs with the GT a.png
        parts = ([f"no GT for {', '.join(sr[n].name for n in only_sr[:5])}"] if only_sr else []) + (
            [f"no SR for {', '.join(gt[n].name for n in only_gt[:5])}"] if only_gt else []
        )
        raise ConfigError(f"SR {sr_dir} and GT {gt_dir} do not match: " + "; ".join(parts))
    mismatched = []
    for name in sorted(sr):
        with Image.open(sr[name]) as a, Image.open(gt[name]) as b:
            if a.size != b.size:
                mismatched.append(f"{name} ({a.size[0]}x{a.size[1]} vs {b.size[0]}x{b.size[1]})")
    if mismatched:
        raise ConfigError(
            f"SR and GT sizes differ for {len(mismatched)} image(s): {', '.join(mismatched[:5])}"
        )
    return [(name, sr[name], gt[name]) for name in sorted(sr)]


def _create(name: str, device: torch.device):
    import pyiqa

    with contextlib.redirect_stdout(io.StringIO()):  # pyiqa prints its download attempts
        return pyiqa.create_metric(name, device=device, **METRIC_KWARGS.get(name, {}))


def _batches(pairs: list[tuple[str, Path, Path | None]], batch_size: int):
    """Batches of equally sized images (test sets mix sizes), read from disk only when their batch comes:
    memory holds one batch, not the test set (3000 DIV2K-Val pairs would be 19 GB of float tensors)."""
    by_size = defaultdict(list)
    for item in pairs:
        with Image.open(item[1]) as img:
            by_size[img.size].append(item)
    for group in by_size.values():
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            sr = torch.stack([read_image(p).rgb for _, p, _ in chunk])
            gt = torch.stack([read_image(p).rgb for _, _, p in chunk]) if chunk[0][2] is not None else None
            yield [name for name, _, _ in chunk], sr, gt


def evaluate(
    sr_dir: str | Path,
    gt_dir: str | Path | None = None,
    metrics: list[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    progress: bool = True,
    text_labels: str | Path | None = None,
) -> EvalResult:
    """Means and per-image values of ``metrics``; ``text_labels`` (``name<TAB>text`` lines) are ``ocr_cer``'s
    references instead of the text read in the GT images (then it needs no GT folder)."""
    metrics = list(metrics or (PAPER_METRICS if gt_dir else NO_REFERENCE))
    check_metric_names(metrics)
    labels = None
    if any(m in OCR_METRICS for m in metrics):
        from pisasr.evaluation.ocr import read_labels, require

        require()
        labels = read_labels(text_labels) if text_labels is not None else None
    needs_gt = [
        m for m in metrics if not is_no_reference(m) and not (m in OCR_METRICS and labels is not None)
    ]
    if needs_gt and gt_dir is None:
        raise ConfigError(f"metric(s) {', '.join(needs_gt)} need a GT folder (--gt)")
    device = torch.device(device)
    if gt_dir is not None:
        pairs = match_pairs(sr_dir, gt_dir)
    else:
        pairs = [(name, path, None) for name, path in sorted(sr_images(sr_dir).items())]
    result = EvalResult()
    for name in metrics:
        if name in OCR_METRICS:
            _score_ocr(result, name, pairs, labels, progress)
            continue
        try:
            model = _create(name, device)
        except Exception as exc:  # download failures come as URLError, OSError, hub errors...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            result.unavailable[name] = (
                f"weights could not be obtained ({type(exc).__name__}: {reason[:120]}); place them in {weights_dir()} (or the Hugging Face cache)"
            )
            continue
        if name == "fid":
            result.means[name] = float(model(str(sr_dir), str(gt_dir)))
            continue
        values = {}
        with torch.no_grad():
            bar = tqdm(total=len(pairs), desc=name, unit="img", disable=not progress, file=sys.stderr)
            for names, sr, gt in _batches(pairs, batch_size):
                sr = sr.to(device)
                scores = model(sr) if is_no_reference(name) else model(sr, gt.to(device))
                values.update(zip(names, scores.reshape(-1).tolist()))
                bar.update(len(names))
            bar.close()
        for image_name, value in values.items():
            result.per_image[image_name][name] = value
        result.means[name] = sum(values.values()) / len(values)
    return result


def _score_ocr(result: EvalResult, name: str, pairs, labels, progress: bool) -> None:
    from pisasr.evaluation.ocr import score_ocr

    scores, skipped, texts = score_ocr(pairs, labels, progress)
    for image_name, value in scores.items():
        result.per_image[image_name][name] = value
    for image_name, reason in skipped.items():
        result.notes[image_name][f"{name}_skipped"] = reason
    for image_name, columns in texts.items():
        result.notes[image_name].update(columns)
    result.skipped[name] = skipped
    result.means[name] = sum(scores.values()) / len(scores) if scores else None


def markdown_table(rows: dict[str, dict[str, float | None]], metrics: list[str]) -> str:
    """Rows (method -> metric -> value) as a markdown table; arrows say which direction is better."""
    head = "| method | " + " | ".join(f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'}" for m in metrics) + " |"
    lines = [head, "|" + " --- |" * (len(metrics) + 1)]
    for method, values in rows.items():
        cells = []
        for m in metrics:
            v = values.get(m)
            cells.append("n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_out(sr_dir: str | Path) -> Path:
    """Where results go without ``--out``: beside the SR folder, named after it (``results/`` ->
    ``results_metrics.json``), never into the current folder nor among the images scored."""
    sr = Path(sr_dir).resolve()
    return sr.parent / f"{sr.name}_metrics.json"


def write_reports(result: EvalResult, out_json: str | Path, metrics: list[str]) -> tuple[Path, Path]:
    """``results.json`` (means, null when unavailable; images left out counted) and ``results.csv`` (per image:
    values, then why an image was left out and what the OCR read) side by side."""
    out_json = atomic_write_text(out_json, json.dumps(result.to_json(), indent=2))
    per_image_metrics = [m for m in metrics if any(m in v for v in result.per_image.values())]
    note_columns = sorted({c for columns in result.notes.values() for c in columns})
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["image", *per_image_metrics, *note_columns])
    for image_name in sorted(set(result.per_image) | set(result.notes)):
        values = result.per_image.get(image_name, {})
        notes = result.notes.get(image_name, {})
        writer.writerow(
            [
                image_name,
                *(values.get(m, "") for m in per_image_metrics),
                *(notes.get(c, "") for c in note_columns),
            ]
        )
    return out_json, atomic_write_text(out_json.with_suffix(".csv"), table.getvalue())
