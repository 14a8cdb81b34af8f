"""Text detection and recognition for ``protect="text"`` and the ``ocr_cer`` metric.

The engine is ``rapidocr`` (3.x), whose wheel ships its PP-OCR detection and recognition ONNX models, run by
``onnxruntime`` on the CPU (or its CUDA provider where onnxruntime has one): nothing is downloaded at run time.
Both are the optional extra ``pip install -e ".[text]"``.

Cost is bounded whatever the input's size: the detector sees the image enlarged until its short side is
``DETECT_SHORT_SIDE`` pixels (PP-OCR's own detection size, so a 96-pixel-high sign is read) and reduced until its
long side is at most ``DETECT_MAX_SIDE`` (a 4k input is searched at 2048 x 1152), so
one image costs at most a 2048 x 2048 detection plus the recognition of its lines. A detected box is kept only
when the recogniser reads it (``find_text``). The boxes (quadrilaterals) are scaled back and rasterised at the
size asked for (the output's, for ``protect``), grown by ``margin`` of their line height on every side so that
the strokes' halos are inside.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from pisasr.errors import ConfigError
from pisasr.regions.detection import DetectionSkipped

DETECT_SHORT_SIDE = 736  # the detector's view: short side enlarged to this...
DETECT_MAX_SIDE = 2048  # ...but the long side never beyond this (cost: at most 2048 x 2048 pixels)
MIN_SIDE = 8  # inputs (or their detection view) thinner than this are not searched
MAX_PIXELS = 1 << 28  # nor inputs over 268 megapixels
MIN_CHARS, MIN_SCORE = 2, 0.8  # a box is text when this many characters are read with this confidence
MARGIN = 0.25  # boxes grow by this fraction of their line height on each side
MISSING = 'text detection needs rapidocr and onnxruntime: pip install -e ".[text]"'
LOGGER = "RapidOCR"  # rapidocr's own logger (configured by the pisasr commands, never here)

_lock = threading.Lock()  # rapidocr keeps per-call options on the engine: one call at a time


@dataclass(eq=False)
class TextLine:
    """A line of text: its quadrilateral (4 x 2 corners (x, y) in the image's pixels, clockwise from the top
    left), what it says and the recogniser's confidence."""

    quad: np.ndarray
    text: str = ""
    score: float = 0.0

    @property
    def height(self) -> float:
        tl, tr, br, bl = self.quad
        return float((np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2)


def require() -> None:
    """A ``ConfigError`` naming the extra when rapidocr or onnxruntime cannot be imported."""
    _engine()


@functools.cache
def _engine():
    try:
        import onnxruntime
        from rapidocr import RapidOCR
    except ImportError:
        raise ConfigError(MISSING) from None
    # RapidOCR() sets its logger's level from its config: pass the level it has, so whatever the caller (or a
    # pisasr command) configured stays in force
    level = logging.getLevelName(logging.getLogger(LOGGER).level)
    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return RapidOCR(
        params={
            "Global.log_level": level.lower() if isinstance(level, str) else "info",
            "Global.use_cls": False,  # upright text; the 180-degree classifier would only add time
            "Global.text_score": MIN_SCORE,
            "Global.max_side_len": DETECT_MAX_SIDE,
            "Global.min_side_len": MIN_SIDE,
            "Det.limit_type": "max",  # the detection view is ours (detection_view): no second resize
            "Det.limit_side_len": DETECT_MAX_SIDE,
            "EngineConfig.onnxruntime.use_cuda": cuda,
        }
    )


def _size_of(image) -> tuple[int, int]:
    """(height, width) of a PIL image, a [3, H, W] / [1, 3, H, W] tensor or an H x W (x C) array."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    shape = tuple(image.shape)
    if isinstance(image, torch.Tensor):
        return shape[-2], shape[-1]
    return shape[0], shape[1]


def detection_scale(height: int, width: int) -> float:
    """How much the detector's view is enlarged (> 1) or reduced; ``DetectionSkipped`` for an image that is not
    searched (too small, too thin or too large)."""
    if min(height, width) < MIN_SIDE:
        raise DetectionSkipped(f"{width}x{height} is too small for text detection (under {MIN_SIDE} px)")
    if height * width > MAX_PIXELS:
        raise DetectionSkipped(
            f"{width}x{height} is too large for text detection (over {MAX_PIXELS >> 20} MP)"
        )
    scale = min(max(1.0, DETECT_SHORT_SIDE / min(height, width)), DETECT_MAX_SIDE / max(height, width))
    if min(height, width) * scale < MIN_SIDE:
        raise DetectionSkipped(f"{width}x{height} is too thin for text detection")
    return scale


def detection_view(image) -> tuple[np.ndarray, float]:
    """The image as the detector sees it (H x W x 3 uint8 BGR at ``detection_scale``) and that scale."""
    height, width = _size_of(image)
    scale = detection_scale(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if isinstance(image, torch.Tensor):
        x = image.detach().float().cpu()
        x = x if x.dim() == 4 else x[None]
        x = x[:, :3] if x.shape[1] >= 3 else x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=size, mode="bicubic", antialias=scale < 1, align_corners=False)
        rgb = (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    else:
        if not isinstance(image, Image.Image):
            array = np.asarray(image)
            if array.dtype != np.uint8:  # floats in [0, 1] (or 16-bit samples)
                full = 65535.0 if array.dtype == np.uint16 else 1.0
                array = (np.clip(array / full, 0, 1) * 255).round().astype(np.uint8)
            image = Image.fromarray(array[..., :3] if array.ndim == 3 else array)
        rgb = np.asarray(image.convert("RGB").resize(size[::-1], Image.Resampling.BICUBIC))
    return np.ascontiguousarray(rgb[..., ::-1]), scale


def find_text(image) -> list[TextLine]:
    """The lines of text in ``image`` (PIL, tensor in [0, 1] or array), in its pixel coordinates, with what they
    say. A detected box counts only when the recogniser reads at least ``MIN_CHARS`` characters in it with
    confidence ``MIN_SCORE``: the detector alone marks plain or textured areas (a uniform blue card, the
    coffee photo) as text. ``DetectionSkipped`` for an image the detector does not search; ``ConfigError``
    when the extra is missing."""
    with _lock:  # also builds the engine once when threads (the CLI's readers) ask together
        engine = _engine()
    view, scale = detection_view(image)
    try:
        with _lock:
            result = engine(view, use_det=True, use_cls=False, use_rec=True, text_score=MIN_SCORE)
    except Exception as exc:  # an image rapidocr cannot take: the caller goes on without text regions
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DetectionSkipped(f"text detection failed ({reason[:120]})") from None
    boxes, texts, scores = (getattr(result, name, None) for name in ("boxes", "txts", "scores"))
    if boxes is None or texts is None or len(boxes) == 0:
        return []
    lines = []
    for box, text, score in zip(boxes, texts, scores):
        if len("".join(str(text).split())) >= MIN_CHARS and score >= MIN_SCORE:
            quad = np.asarray(box, dtype=np.float64).reshape(4, 2) / scale
            lines.append(TextLine(quad, str(text), float(score)))
    return lines


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Lines top to bottom, and left to right within a line: boxes whose centres lie within half a line
    height of each other vertically are one line of the page."""
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda item: item.quad[:, 1].mean()):
        centre = line.quad[:, 1].mean()
        if rows:
            row = rows[-1]
            row_centre = np.mean([item.quad[:, 1].mean() for item in row])
            if abs(centre - row_centre) <= 0.5 * max(line.height, np.mean([i.height for i in row])):
                row.append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda item: item.quad[:, 0].min())]


def read_text(image) -> str:
    """What the image says: its lines in reading order, joined with one space (whitespace runs collapsed)."""
    lines = reading_order(find_text(image))
    return " ".join(" ".join(line.text.split()) for line in lines if line.text.strip())


def grown(quad: np.ndarray, margin: float) -> np.ndarray:
    """The quadrilateral grown outwards by ``margin`` of its line height along its own two axes."""
    tl, tr, br, bl = quad
    along = (tr - tl) + (br - bl)
    across = (bl - tl) + (br - tr)
    along = along / (np.linalg.norm(along) or 1.0)
    across = across / (np.linalg.norm(across) or 1.0)
    grow = margin * (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    signs = ((-1, -1), (1, -1), (1, 1), (-1, 1))
    return np.stack([corner + grow * (a * along + c * across) for corner, (a, c) in zip(quad, signs)])


def rasterise(lines: list[TextLine], image_size: tuple[int, int], size: tuple[int, int], margin: float):
    """H x W bool mask at ``size`` of the lines (found in an image of ``image_size``), each grown by ``margin``."""
    (height, width), (out_h, out_w) = image_size, size
    canvas = Image.new("1", (out_w, out_h), 0)
    draw = ImageDraw.Draw(canvas)
    for line in lines:
        quad = grown(line.quad, margin) * np.array([out_w / width, out_h / height])
        draw.polygon([tuple(p) for p in quad.tolist()], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def text_mask(image, size: tuple[int, int] | None = None, margin: float = MARGIN) -> np.ndarray:
    """H x W bool mask at ``size`` = (height, width) (default the image's), True on every line of text found,
    grown by ``margin`` of its line height on each side."""
    image_size = _size_of(image)
    return rasterise(find_text(image), image_size, tuple(size or image_size), margin)
