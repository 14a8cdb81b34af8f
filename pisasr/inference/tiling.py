"""Latent tiling with overlap and Gaussian blending, so that UNet memory depends on the tile, not the image.

``tiled_apply(fn, z, tile, overlap)`` runs ``fn`` (a per-pixel-aligned map such as the UNet's noise prediction)
on overlapping tiles of ``z``, ``batch`` tiles per call, and blends the results with Gaussian weights peaked at
each tile's centre. As in the official tiled inference, a latent whose area is at most ``tile * tile`` is passed
to ``fn`` whole (so a 1024x512 image, latent 128x64 at tile 96, is not tiled) and the result equals the untiled
one exactly. Where the official code crashes (short side below the tile but area above ``tile * tile``), tiles
here are ``min(tile, side)`` along each axis.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``[0, length)`` with tiles of ``tile`` overlapping by at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def needs_tiling(height: int, width: int, tile: int) -> bool:
    """The official switch: tile when the latent's area exceeds ``tile * tile``."""
    return height * width > tile * tile


def gaussian_weights(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Separable Gaussian (variance 0.01 of the tile size, as the official tiled inference) -> [1, 1, H, W]."""

    def profile(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float64)
        mid = (n - 1) / 2
        return torch.exp(-((x - mid) ** 2) / (n * n) / (2 * 0.01))

    weights = profile(height)[:, None] * profile(width)[None, :]
    return weights.to(device=device, dtype=dtype)[None, None]


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, tile: int, overlap: int, batch: int = 1
) -> torch.Tensor:
    """Apply ``fn`` to ``z`` ([1, C, H, W]) tile by tile; ``fn`` maps [N, C, h, w] to [N, C', h, w]."""
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile {tile}")
    if z.shape[0] != 1:
        raise ValueError("tiled_apply expects a single latent")
    _, _, height, width = z.shape
    if not needs_tiling(height, width, tile):
        return fn(z)
    th, tw = min(tile, height), min(tile, width)
    boxes = [(y, x) for y in tile_starts(height, th, overlap) for x in tile_starts(width, tw, overlap)]
    weight = gaussian_weights(th, tw, device=z.device, dtype=torch.float32)
    out = None
    norm = torch.zeros((1, 1, height, width), device=z.device, dtype=torch.float32)
    for i in range(0, len(boxes), batch):
        chunk = boxes[i : i + batch]
        tiles = torch.cat([z[:, :, y : y + th, x : x + tw] for y, x in chunk])
        result = fn(tiles).float()
        if out is None:
            out = torch.zeros((1, result.shape[1], height, width), device=z.device, dtype=torch.float32)
        for (y, x), r in zip(chunk, result):
            out[:, :, y : y + th, x : x + tw] += r[None] * weight
            norm[:, :, y : y + th, x : x + tw] += weight
    return (out / norm).to(z.dtype)
