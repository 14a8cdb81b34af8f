"""Image resizing for the inference path: PIL's bicubic (as the official test script) or torch's.

The official script resizes the 8-bit PIL image with PIL's bicubic (Keys' a = -0.5, antialiased when shrinking),
so the model sees an 8-bit input. ``resize_image(..., method="pil", bits=8)`` reproduces that exactly, channel by
channel; ``bits=16`` resizes at 16-bit precision (PIL's float mode, rounded to the 16-bit grid) and ``bits=None``
keeps floats. ``method="torch"`` is torch's bicubic (a = -0.75) on floats, pisasr's earlier behaviour.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

RESAMPLERS = ("pil", "torch")


def torch_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of [B, C, H, W] floats; antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink)


def _pil_channel(channel: np.ndarray, size: tuple[int, int], bits: int | None) -> np.ndarray:
    height, width = size
    if bits == 8:
        img = Image.fromarray(np.round(channel * 255.0).clip(0, 255).astype(np.uint8), "L")
        return np.asarray(img.resize((width, height), Image.Resampling.BICUBIC), np.float32) / 255.0
    scale = 65535.0 if bits == 16 else 1.0
    img = Image.fromarray((channel * scale).astype(np.float32), "F")
    out = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    if bits == 16:
        return np.round(out).clip(0, 65535) / 65535.0
    return out


def pil_resize(x: torch.Tensor, size: tuple[int, int], bits: int | None = 8) -> torch.Tensor:
    """PIL bicubic resize of [B, C, H, W] in [0, 1], each channel at ``bits`` (8, 16 or None for floats)."""
    if tuple(x.shape[-2:]) == tuple(size) and bits is None:
        return x
    array = x.detach().float().cpu().numpy()
    out = np.stack([np.stack([_pil_channel(c, size, bits) for c in image]) for image in array])
    return torch.from_numpy(out).to(x.device)


def resize_image(
    x: torch.Tensor, size: tuple[int, int], method: str = "pil", bits: int | None = 8
) -> torch.Tensor:
    """Resize [B, C, H, W] in [0, 1] with ``method`` (see module docstring); the result is clamped to [0, 1]."""
    if method == "pil":
        return pil_resize(x, size, bits).clamp(0, 1)
    if method == "torch":
        return torch_resize(x, size).clamp(0, 1)
    raise ValueError(f"resample must be one of {RESAMPLERS}, got {method!r}")


def quantize_like_to_pil(x: torch.Tensor) -> torch.Tensor:
    """What torchvision's ``ToPILImage`` does to floats: ``(x * 255).byte()``, i.e. truncation, not rounding."""
    return torch.floor(x.clamp(0, 1) * 255.0) / 255.0
