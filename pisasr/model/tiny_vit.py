"""Tiny random DINO ViT-S/16-shaped and DINOv2-shaped models, written offline (tests and smoke runs of ADD).

The same transformers classes and config keys as ``facebook/dino-vits16`` (``ViTModel``: 224 px, patch 16, 12
blocks, so that the discriminator's hooks after blocks 2, 5, 8, 11 exist) and ``facebook/dinov2-small``
(``Dinov2Model``: 518 px, patch 14), only narrow, so that ``from_pretrained`` runs as with the real models.
Deterministic by seed; the global RNG is left untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pisasr.io.files import staged_folder


def make_tiny_dino(out_dir: str | os.PathLike, seed: int = 0, hidden: int = 32, replace: bool = True) -> Path:
    """``hidden=384``: the full ViT-S/16 shape (6 heads, MLP 1536), random weights (benchmarks)."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        hidden_size=hidden, num_hidden_layers=12, num_attention_heads=hidden // 64 if hidden >= 384 else 4,
        intermediate_size=4 * hidden if hidden >= 384 else 2 * hidden,
        image_size=224, patch_size=16, qkv_bias=True, layer_norm_eps=1e-6,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(config, add_pooling_layer=False)
    with staged_folder(out_dir, "replace" if replace else "keep", complete="config.json") as tmp:
        model.save_pretrained(tmp)
    return Path(out_dir)


def make_tiny_dinov2(
    out_dir: str | os.PathLike, seed: int = 0, hidden: int = 32, replace: bool = True
) -> Path:
    """``hidden=384``: the full DINOv2-S/14 shape (12 blocks, 6 heads, MLP ratio 4), random weights (benchmarks)."""
    from transformers import Dinov2Config, Dinov2Model

    small = hidden >= 384
    config = Dinov2Config(
        hidden_size=hidden, num_hidden_layers=12 if small else 2, num_attention_heads=hidden // 64 if small else 4,
        mlp_ratio=4 if small else 2, image_size=518, patch_size=14,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = Dinov2Model(config)
    with staged_folder(out_dir, "replace" if replace else "keep", complete="config.json") as tmp:
        model.save_pretrained(tmp)
    return Path(out_dir)


def ensure_tiny_vits(dino: str, dinov2: str) -> None:
    """Write the tiny models to ``dino`` / ``dinov2`` when these are absolute paths without a model (smoke
    configs only: a hub id is left to ``from_pretrained``)."""
    for path, make in ((dino, make_tiny_dino), (dinov2, make_tiny_dinov2)):
        if Path(path).is_absolute() and not (Path(path) / "config.json").is_file():
            make(path, replace=False)  # test workers may make it at once
