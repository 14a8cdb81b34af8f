"""Colour correction of the SR output against the bicubic-upsampled input (StableSR / PiSA-SR practice).

``adain`` matches each channel's mean and standard deviation; ``wavelet`` keeps the output's high frequencies
and takes the low frequencies (five levels of a dilated 3x3 blur) from the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COLOR_FIXES = ("adain", "wavelet", "none")


def adain(content: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-image, per-channel mean/std transfer; tensors [B, C, H, W]."""
    c_mean, c_std = content.mean((2, 3), keepdim=True), (content.var((2, 3), keepdim=True) + eps).sqrt()
    r_mean, r_std = reference.mean((2, 3), keepdim=True), (reference.var((2, 3), keepdim=True) + eps).sqrt()
    return (content - c_mean) / c_std * r_std + r_mean


def _wavelet_blur(image: torch.Tensor, radius: int) -> torch.Tensor:
    kernel = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=image.dtype, device=image.device) / 16
    channels = image.shape[1]
    kernel = kernel.expand(channels, 1, 3, 3)
    padded = F.pad(image, (radius,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, groups=channels, dilation=radius)


def _low_frequency(image: torch.Tensor, levels: int = 5) -> torch.Tensor:
    low = image
    for i in range(levels):
        low = _wavelet_blur(low, 2**i)
    return low


def wavelet(content: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    return content - _low_frequency(content, levels) + _low_frequency(reference, levels)


def apply_color_fix(method: str, content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    if method == "adain":
        return adain(content, reference)
    if method == "wavelet":
        return wavelet(content, reference)
    if method == "none":
        return content
    raise ValueError(f"color fix must be one of {COLOR_FIXES}, got {method!r}")
