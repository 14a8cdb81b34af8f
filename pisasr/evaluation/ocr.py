"""``ocr_cer``: how readable restored text is, as the character error rate of what an OCR reads in the SR image.

The reference is what the same OCR (``pisasr.regions.text``: rapidocr's PP-OCR models) reads in the GT image,
or a label where ``--text_labels FILE`` gives one (one ``name<TAB>text`` per line; the name is the image's stem
or file name). Text is read in reading order (lines top to bottom, left to right within a line, joined with one
space); the score is rapidfuzz's Levenshtein distance over the reference's length (0 = the same characters;
more than 1 is possible when the SR reads extra text). Images without a reference (a GT where no text is read,
an empty or missing label, an unreadable GT) are left out of the mean, with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from pisasr.errors import ConfigError, ImageError
from pisasr.io.images import IMAGE_SUFFIXES, read_image

OCR_METRICS = ("ocr_cer",)
MISSING = 'ocr_cer needs rapidocr, onnxruntime and rapidfuzz: pip install -e ".[text]"'


def require() -> None:
    """A ``ConfigError`` naming the extra when any of its packages is missing (before anything is scored)."""
    try:
        import rapidfuzz  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING) from None
    from pisasr.regions.text import require as require_ocr

    try:
        require_ocr()
    except ConfigError:
        raise ConfigError(MISSING) from None


def read_labels(path: str | Path) -> dict[str, str]:
    """``name<TAB>text`` per line -> {stem: text}; blank lines are skipped, anything else is a ``ConfigError``
    naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"--text_labels {path}: cannot read ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    labels = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, tab, text = line.partition("\t")
        if not tab or not name.strip():
            raise ConfigError(f"--text_labels {path}:{number}: expected 'name<TAB>text', got {line[:60]!r}")
        name = name.strip()
        stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name
        labels[stem] = " ".join(text.split())
    return labels


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: edits turning ``hypothesis`` into ``reference``, over the reference's length."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(hypothesis, reference) / len(reference)


def _read(path: Path) -> str:
    from pisasr.regions.text import read_text

    return read_text(read_image(path).rgb)


def score_ocr(
    pairs: list[tuple[str, Path, Path | None]], labels: dict[str, str] | None = None, progress: bool = True
) -> tuple[dict[str, float], dict[str, str], dict[str, dict[str, str]]]:
    """(scores, skipped, texts): ``ocr_cer`` per scored image, the reason per image left out, and what was read
    (``ocr_sr_text``, ``ocr_reference``) per image."""
    scores, skipped, texts = {}, {}, {}
    bar = tqdm(total=len(pairs), desc="ocr_cer", unit="img", disable=not progress, file=sys.stderr)
    for name, sr, gt in pairs:
        bar.update(1)
        if labels is not None:
            reference = labels.get(name)
            if reference is None:
                skipped[name] = "no label"
                continue
        else:
            try:
                reference = _read(gt)
            except ImageError as exc:  # DetectionSkipped too: the GT cannot be read
                skipped[name] = f"GT unreadable: {exc}"
                continue
        if not reference:
            skipped[name] = "empty label" if labels is not None else "no text in the GT"
            continue
        try:
            hypothesis = _read(sr)
        except ImageError as exc:
            skipped[name] = f"SR unreadable: {exc}"
            continue
        scores[name] = cer(hypothesis, reference)
        texts[name] = {"ocr_sr_text": hypothesis, "ocr_reference": reference}
    bar.close()
    return scores, skipped, texts
