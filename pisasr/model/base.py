"""Loading the frozen Stable Diffusion 2.x base (UNet, VAE, text encoder, tokenizer, scheduler).

The base is a hub id or a local folder in diffusers layout; both go through the same ``from_pretrained`` calls,
which is also how the tests load the tiny offline base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from pisasr.config import SD21_BASE, SD_TURBO
from pisasr.errors import ModelLoadError

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

WORKING_BASES = (
    f"{SD_TURBO} (SD-Turbo, deprecated by Stability AI but still served)",
    f"{SD21_BASE} (SD-2.1-base community mirror; the official checkpoint's base)",
    "a local folder with unet/ vae/ text_encoder/ tokenizer/ scheduler/ (e.g. from `huggingface-cli download`)",
)


@dataclass
class FrozenBase:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel | None
    tokenizer: CLIPTokenizer | None
    scheduler: DDPMScheduler
    source: str


def ensure_tiny_base(path: str) -> None:
    """Write the tiny offline base to ``path`` if it is not there yet (smoke configs only)."""
    if not (Path(path) / "unet" / "config.json").is_file():
        from pisasr.testing.tiny_base import make_tiny_base

        make_tiny_base(path)


def _load_failure(base: str, exc: Exception) -> ModelLoadError:
    reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
    where = "local folder" if Path(base).exists() else "hub id or folder"
    return ModelLoadError(
        f"cannot load base model {base!r} ({where}): {reason}. Bases that work: "
        + "; ".join(WORKING_BASES)
        + ". Offline (HF_HUB_OFFLINE=1) a hub id must already be in the Hugging Face cache."
    )


def load_base(
    base: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    text_encoder: bool = True,
) -> FrozenBase:
    """Load every component of ``base`` with gradients off. ``text_encoder=False`` skips encoder and tokenizer."""
    local = Path(base)
    if local.exists() and not local.is_dir():
        raise ModelLoadError(
            f"base model {base!r} is a file; it must be a folder in diffusers layout or a hub id"
        )
    if local.is_dir():
        missing = [
            s
            for s in SUBFOLDERS
            if not (local / s).is_dir() and (text_encoder or s not in ("text_encoder", "tokenizer"))
        ]
        if missing:
            raise ModelLoadError(
                f"base model folder {base!r} lacks subfolder(s) {', '.join(missing)} (diffusers layout expected)"
            )
    kwargs = {"revision": revision} if revision else {}
    try:
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=dtype, **kwargs)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=dtype, **kwargs)
        scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler", **kwargs)
        enc = tok = None
        if text_encoder:
            enc = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", torch_dtype=dtype, **kwargs)
            tok = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_failure(base, exc) from None
    for module in (unet, vae, enc):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    return FrozenBase(unet=unet, vae=vae, text_encoder=enc, tokenizer=tok, scheduler=scheduler, source=base)


@torch.no_grad()
def encode_prompts(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: list[str]) -> torch.Tensor:
    """CLIP hidden states for ``prompts`` as Stable Diffusion conditions on them (padded to max length)."""
    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(text_encoder.device)
    return text_encoder(ids)[0]
