"""``--to official``: the ``.pkl`` that the official PiSA-SR code writes and reads.

Layout of the official ``save_model`` (``pisasr.py`` L296-305 of csslc/PiSA-SR): ``lora_rank_unet_pix/sem``, the
six module lists ``unet_lora_{encoder,decoder,others}_modules_{pix,sem}`` and ``state_dict_unet``, the LoRA tensors
named as the UNet names them with six PEFT adapters ``default_{part}_{pix,sem}`` added. The official loaders
(``load_ckpt_from_state_dict`` L233-259, ``PiSASR_eval._load_and_save_ckpt_from_state_dict`` L418-450) build each
adapter as ``LoraConfig(r=rank, target_modules=list)``: one rank per adapter and PEFT's default alpha, so a
checkpoint with another alpha cannot be expressed and is refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pisasr.errors import ConfigError
from pisasr.export.source import check_output_free
from pisasr.io.files import atomic_write
from pisasr.model.checkpoint import (
    OFFICIAL_ALPHA,
    OFFICIAL_PARTS,
    AdapterCheckpoint,
    official_key,
    official_part,
)
from pisasr.model.dual_lora import ADAPTERS


def official_dict(ckpt: AdapterCheckpoint) -> dict:
    """The official checkpoint dict for ``ckpt`` (tensors as they are: a round trip is bit-identical)."""
    m = ckpt.meta
    for name in ADAPTERS:
        alpha = getattr(m, f"alpha_{name}")
        if alpha != OFFICIAL_ALPHA:
            raise ConfigError(
                f"{ckpt.path}: adapter '{name}' has lora_alpha {alpha:g}, but the official loader always uses "
                f"PEFT's default {OFFICIAL_ALPHA:g}; it cannot be exported to the official format"
            )
    sd: dict = {}
    for name in ADAPTERS:
        for part in OFFICIAL_PARTS:
            sd[f"unet_lora_{part}_modules_{name}"] = [t for t in m.target_modules if official_part(t) == part]
    sd["lora_rank_unet_pix"], sd["lora_rank_unet_sem"] = int(m.rank_pix), int(m.rank_sem)
    sd["state_dict_unet"] = {
        official_key(key, name): tensor.detach().cpu().contiguous()
        for name in ADAPTERS
        for key, tensor in ckpt.states[name].items()
    }
    return sd


def export_official(ckpt: AdapterCheckpoint, out: Path) -> Path:
    """Write ``official_dict(ckpt)`` to ``out`` with ``torch.save`` (atomically; never over an existing file)."""
    check_output_free(out)
    sd = official_dict(ckpt)
    return atomic_write(out, lambda tmp: torch.save(sd, tmp), suffix=out.suffix)
