"""Reproducing the paper's tables: inference + evaluation on the StableSR test-set layout.

Each test set is a folder under ``data_root`` holding an LR and an HR folder (``LR``/``HR`` as written by
``preprocess/make_test_pairs.py``, or the StableSR names ``test_LR``/``test_HR``, or ``lq``/``gt``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pisasr.errors import ConfigError, PiSAError
from pisasr.evaluation.metrics import LOWER_IS_BETTER, PAPER_METRICS, evaluate
from pisasr.evaluation.ocr import OCR_METRICS
from pisasr.inference.batch import run_batch
from pisasr.io.images import IMAGE_SUFFIXES, list_inputs, read_image, save_image
from pisasr.io.paths import RESOURCES

DEFAULT_SETS = ("RealSR", "DRealSR", "DIV2K-Val")
LR_NAMES, HR_NAMES = ("LR", "test_LR", "lq"), ("HR", "test_HR", "gt")
PUBLISHED = RESOURCES / "published_results.yaml"


def locate_set(data_root: str | Path, name: str) -> tuple[Path, Path]:
    root = Path(data_root) / name
    lr = next((root / n for n in LR_NAMES if (root / n).is_dir()), None)
    hr = next((root / n for n in HR_NAMES if (root / n).is_dir()), None)
    if lr is None or hr is None:
        raise ConfigError(
            f"test set {root} needs an LR folder ({'/'.join(LR_NAMES)}) and an HR folder ({'/'.join(HR_NAMES)})"
        )
    return lr, hr


KINDS = ("primary", "secondary")  # the method's own paper; a later source quoting it
# Where each metric's values lie, so that a slip in a hand-transcribed table (6058 for 0.6058) is an error
UNIT_RANGE = ("ssim", "lpips", "dists", "clipiqa", "maniqa-pipal", "maniqa")
METRIC_RANGES = {**dict.fromkeys(UNIT_RANGE, (0.0, 1.0)), "psnr": (0.0, 100.0), "musiq": (0.0, 100.0)}


def load_published(path: str | Path = PUBLISHED) -> dict[str, dict]:
    """Published numbers: method -> {"source": citation, "kind": primary|secondary, "quotes": optional citation
    of the original, "results": set -> pyiqa metric -> value}.

    Checked on load, so a typo in a hand-transcribed table (``LPIPS`` for ``lpips``, ``0,2672``, ``6058``) or a
    row without its provenance is an error naming the file and the entry, not a silently empty column.
    """
    import pyiqa

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"published numbers {path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"published numbers {path}: not valid YAML{line}") from None
    methods = data.get("methods") if isinstance(data, dict) else None
    if not isinstance(methods, dict):
        raise ConfigError(f"published numbers {path}: needs a top-level 'methods' mapping")
    known = set(pyiqa.list_models()) | set(OCR_METRICS)
    for method, entry in methods.items():
        if not isinstance(entry, dict) or not str(entry.get("source") or "").strip():
            raise ConfigError(
                f"published numbers {path}: {method} needs a 'source' naming where its numbers are from"
            )
        if entry.get("kind", "primary") not in KINDS:
            raise ConfigError(
                f"published numbers {path}: {method}.kind {entry.get('kind')!r} is not one of {', '.join(KINDS)}"
            )
        entry.setdefault("kind", "primary")  # a file without kinds: its sources are the methods' own papers
        results = entry.get("results") or {}
        if not isinstance(results, dict):
            raise ConfigError(f"published numbers {path}: {method}.results must map test sets to metrics")
        entry["results"] = results
        for set_name, values in results.items():
            if not isinstance(values, dict):
                raise ConfigError(
                    f"published numbers {path}: {method}.{set_name} must map metric names to numbers"
                )
            for metric, value in values.items():
                if metric not in known:
                    raise ConfigError(
                        f"published numbers {path}: {method}.{set_name}: {metric!r} is not a pyiqa metric name "
                        f"(the paper's: {', '.join(PAPER_METRICS)})"
                    )
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(
                        f"published numbers {path}: {method}.{set_name}.{metric} = {value!r} is not a number"
                    )
                low, high = METRIC_RANGES.get(metric, (0.0, float("inf")))
                if not low <= value <= high:
                    raise ConfigError(
                        f"published numbers {path}: {method}.{set_name}.{metric} = {value!r} is outside "
                        f"{metric}'s range [{low:g}, {high:g}]"
                    )
    return methods


def provenance(published: dict[str, dict], set_name: str) -> list[str]:
    """Report lines under a set's table: where each published row printed for ``set_name`` comes from."""
    lines = []
    for method, entry in published.items():
        if set_name in entry["results"]:
            quotes = f", quoting {entry['quotes']}" if entry.get("quotes") else ""
            lines.append(f"- {method} (paper): {entry['kind']} source: {entry['source']}{quotes}\n")
    return lines


def run_set(pipe, lr_dir: Path, out_dir: Path, skip_existing: bool = True) -> Path:
    summary = run_batch(
        pipe,
        list_inputs(lr_dir),
        out_dir,
        [(pipe.options.lambda_pix, pipe.options.lambda_sem)],
        skip_existing=skip_existing,
    )
    if summary.failures:
        raise ConfigError(f"{len(summary.failures)} test image(s) failed, e.g. {summary.failures[0][1]}")
    return out_dir


def run_grid(
    pipe, lr_dir: Path, out_root: Path, pairs: list[tuple[float, float]]
) -> dict[tuple[float, float], Path]:
    """All pairs per image in one call (the UNet passes run once); one folder per pair."""
    folders = {pair: out_root / f"pix{pair[0]:g}_sem{pair[1]:g}" for pair in pairs}
    for path in list_inputs(lr_dir):
        image = read_image(path)
        for pair, result in pipe.restore(image, pairs).items():
            save_image(result, folders[pair] / f"{path.stem}.png", image.bit_depth)
    return folders


def comparison_rows(
    ours: dict[str, float | None],
    set_name: str,
    published: dict[str, dict],
    extra: dict[str, dict],
    metrics: list[str],
) -> dict[str, dict]:
    """Table rows: ours, the published numbers (n/a where none), ours minus PiSA-SR's, then extra methods."""
    rows = {"pisasr (ours)": ours}
    for method, entry in published.items():
        values = entry["results"].get(set_name, {})
        rows[f"{method} (paper)"] = {m: values.get(m) for m in metrics}
    paper = rows.get("PiSA-SR (paper)", {})
    rows["ours - paper"] = {
        m: (ours[m] - paper[m]) if ours.get(m) is not None and paper.get(m) is not None else None
        for m in metrics
    }
    rows.update(extra)
    return rows


def extra_folder(folder: Path, set_name: str) -> Path | None:
    """Another method's outputs for ``set_name``: ``DIR/<set>``, else DIR itself when it holds images, else None."""
    if (folder / set_name).is_dir():
        return folder / set_name
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        return folder
    return None


def score_extras(
    extras: dict[str, Path], set_name: str, hr_dir: Path, metrics: list[str], device
) -> tuple[dict[str, dict], list[str]]:
    """Rows for other methods' outputs on one set, and report notes; a method with no (usable) outputs for the
    set gets an n/a row and a note, and the run goes on."""
    rows, notes = {}, []
    for method, folder in extras.items():
        rows[method] = dict.fromkeys(metrics)
        target = extra_folder(folder, set_name)
        if target is None:
            notes.append(
                f"- {method}: no outputs for {set_name} (no {folder / set_name}, no images in {folder})\n"
            )
            continue
        try:
            result = evaluate(target, hr_dir, metrics, device)
        except PiSAError as exc:
            notes.append(f"- {method}: {set_name} not scored: {exc}\n")
            continue
        rows[method] = {m: result.means.get(m) for m in metrics}
    return rows, notes


def _drawable(points: dict[tuple[float, float], dict[str, float]], x: str, y: str) -> dict[float, list]:
    """lambda_pix -> [(lambda_sem, values)] for the points that have both ``x`` and ``y``."""
    lines = {}
    for lambda_pix in sorted({p for p, _ in points}):
        row = sorted(
            (s, v)
            for (p, s), v in points.items()
            if p == lambda_pix and v.get(x) is not None and v.get(y) is not None
        )
        if row:
            lines[lambda_pix] = row
    return lines


def tradeoff_plot(
    points: dict[tuple[float, float], dict[str, float]], x: str, y: str, out: Path, title: str
) -> Path | None:
    """The fidelity-perception curve of a lambda grid: one line per lambda_pix, labelled points.

    Returns None, writing nothing, when no point has both metrics (one of them unavailable)."""
    lines = _drawable(points, x, y)
    if not lines:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for lambda_pix, row in lines.items():
        ax.plot(
            [v[x] for _, v in row], [v[y] for _, v in row], marker="o", label=f"lambda_pix={lambda_pix:g}"
        )
        for s, v in row:
            ax.annotate(f"sem {s:g}", (v[x], v[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{x} ({'lower' if x in LOWER_IS_BETTER else 'higher'} is better)")
    ax.set_ylabel(f"{y} ({'lower' if y in LOWER_IS_BETTER else 'higher'} is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def evaluate_grid(folders, hr_dir, metrics, device) -> tuple[dict[tuple[float, float], dict], dict[str, str]]:
    """Metrics per lambda pair, and the reasons of those that were unavailable."""
    points, unavailable = {}, {}
    for pair, folder in folders.items():
        result = evaluate(folder, hr_dir, metrics, device, progress=False)
        points[pair] = {m: result.means.get(m) for m in metrics}
        unavailable.update(result.unavailable)
    return points, unavailable


def grid_report(points, unavailable: dict[str, str], x: str, y: str, out: Path, title: str) -> str:
    """Draw the trade-off curve; the report line says where it is, or why there is none."""
    plot = tradeoff_plot(points, x, y, out, title)
    if plot is not None:
        return f"trade-off curve: {plot}\n"
    missing = [f"{m} unavailable: {unavailable[m]}" for m in (x, y) if m in unavailable]
    return f"- trade-off curve not drawn: no lambda pair has both {x} and {y} ({'; '.join(missing) or 'no values'})\n"
