"""Loading the frozen Stable Diffusion 2.x base (UNet, VAE, text encoder, tokenizer, scheduler).

The base is a hub id or a local folder in diffusers layout; both go through the same ``from_pretrained`` calls,
which is also how the tests load the tiny offline base.
"""

from __future__ import annotations

import hashlib
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
    fingerprint: str | None = None


# Known base families by the names their hub ids and downloaded folders carry; used to catch adapters run on the
# wrong base (the official checkpoint was trained on SD-2.1-base, pisasr's default base is SD-Turbo).
BASE_FAMILIES = {
    "SD-Turbo": ("sd-turbo", "sd_turbo"),
    "SD-2.1-base": ("stable-diffusion-2-1-base", "stable_diffusion_2_1_base", "sd21-base", "sd-2-1-base"),
}
FAMILY_CONFIGS = {"SD-Turbo": "configs/sd_turbo.yaml", "SD-2.1-base": "configs/official_sd21.yaml"}


def base_family(base: str | None) -> str | None:
    """``"SD-Turbo"``, ``"SD-2.1-base"`` or None (unknown: e.g. a local folder with another name)."""
    if not base:
        return None
    name = str(base).lower().replace("--", "/")  # Hugging Face cache folders: models--org--name
    for family, patterns in BASE_FAMILIES.items():
        if any(pattern in name for pattern in patterns):
            return family
    return None


def unet_fingerprint(unet: UNet2DConditionModel) -> str:
    """A short digest of weights no adapter touches (the timestep embedding), identifying the base's UNet.

    Taken in fp16 so that fp32 and fp16 copies of the same base agree.
    """
    digest = hashlib.sha256()
    for name, param in sorted(unet.time_embedding.named_parameters()):
        if "lora_" not in name:
            digest.update(param.detach().to(torch.float16).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def ensure_tiny_base(path: str) -> None:
    """Write the tiny offline base to ``path`` if it is not there yet (smoke configs only)."""
    if not (Path(path) / "unet" / "config.json").is_file():
        from pisasr.model.tiny_base import make_tiny_base

        make_tiny_base(path, replace=False)  # test workers may make it at once


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
    frozen_dtype: torch.dtype | None = None,
    text_encoder: bool = True,
) -> FrozenBase:
    """Load every component of ``base`` with gradients off. ``text_encoder=False`` skips encoder and tokenizer.

    ``dtype`` is the UNet's (adapters are added and merged in it); the VAE and the text encoder are loaded in
    ``frozen_dtype`` (default ``dtype``): loading them in the dtype they run in, rather than casting afterwards,
    is what diffusers asks for (``to(dtype)`` on its VAE warns)."""
    frozen_dtype = frozen_dtype or dtype
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
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=frozen_dtype, **kwargs)
        scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler", **kwargs)
        enc = tok = None
        if text_encoder:
            enc = CLIPTextModel.from_pretrained(
                base, subfolder="text_encoder", torch_dtype=frozen_dtype, **kwargs
            )
            tok = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_failure(base, exc) from None
    for module in (unet, vae, enc):
        if module is not None:
            module.requires_grad_(False)
            module.eval()
    return FrozenBase(
        unet=unet,
        vae=vae,
        text_encoder=enc,
        tokenizer=tok,
        scheduler=scheduler,
        source=base,
        fingerprint=unet_fingerprint(unet),
    )


def load_text_encoder(base: str, revision: str | None = None) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """Tokenizer and text encoder of ``base`` alone (inference loads them only when a prompt is embedded)."""
    kwargs = {"revision": revision} if revision else {}
    try:
        tok = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", **kwargs)
        enc = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_failure(base, exc) from None
    return tok, enc.requires_grad_(False).eval()


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
