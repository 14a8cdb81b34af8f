"""Face detection for ``protect="faces"``: faces get a fidelity-leaning pair so they are not hallucinated.

The detector is scikit-image's LBP frontal-face cascade (``skimage.feature.Cascade`` with the cascade file that
ships inside the scikit-image wheel, ``skimage.data.lbp_frontal_face_cascade_filename()``): nothing is
downloaded at run time. It finds frontal faces from about 24 pixels up; profiles are missed and face-like
patterns are sometimes flagged, so the mask errs on the side of a slightly more faithful region. Any other
detector plugs in as a callable returning a mask (``pisasr.regions.detection.protect``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

DETECT_MAX_SIDE = 1024  # larger images are searched at this size (the cascade's cost grows with the area)


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    height: int
    width: int


@functools.cache
def _cascade():
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def _as_array(image) -> np.ndarray:
    """PIL image, [3, H, W] / [1, 3, H, W] tensor in [0, 1], or H x W (x 3) array -> H x W x 3 float in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    if isinstance(image, torch.Tensor):
        array = image.detach().float().cpu()
        array = (array[0] if array.dim() == 4 else array).permute(1, 2, 0).numpy()
    else:
        array = np.asarray(image, dtype=np.float64)
        array = array / 255.0 if array.max(initial=0) > 1 else array
    if array.ndim == 2:
        array = array[:, :, None]
    return np.repeat(array, 3, 2) if array.shape[2] == 1 else array[:, :, :3]


def detect_faces(image, min_neighbors: int = 8, scale_factor: float = 1.2) -> list[Box]:
    """Face boxes in the image's pixel coordinates."""
    array = _as_array(image)
    height, width = array.shape[:2]
    shrink = min(1.0, DETECT_MAX_SIDE / max(height, width))
    if shrink < 1:
        small = Image.fromarray((array * 255).round().astype(np.uint8)).resize(
            (max(1, round(width * shrink)), max(1, round(height * shrink))), Image.Resampling.LANCZOS
        )
        array = np.asarray(small, dtype=np.float64) / 255.0
    found = _cascade().detect_multi_scale(
        img=array,
        scale_factor=scale_factor,
        step_ratio=1,
        min_size=(24, 24),
        max_size=array.shape[:2],
        min_neighbor_number=min_neighbors,
    )
    return [
        Box(
            round(f["r"] / shrink),
            round(f["c"] / shrink),
            round(f["height"] / shrink),
            round(f["width"] / shrink),
        )
        for f in found
    ]


def face_mask(image, margin: float = 0.25, boxes: list[Box] | None = None) -> np.ndarray:
    """H x W mask, 1 on every detected face (or each of ``boxes``, found in this image before) grown by ``margin``
    of its size on each side (hair, chin), else 0."""
    array = _as_array(image)
    mask = np.zeros(array.shape[:2], dtype=np.float64)
    for box in detect_faces(array) if boxes is None else boxes:
        grow_y, grow_x = round(box.height * margin), round(box.width * margin)
        top, left = max(0, box.top - grow_y), max(0, box.left - grow_x)
        mask[top : box.top + box.height + grow_y, left : box.left + box.width + grow_x] = 1.0
    return mask
