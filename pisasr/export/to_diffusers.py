"""``--to diffusers``: plain diffusers UNet folders with the adapters merged, plus the base's VAE and the prompt
embedding, so that diffusers alone restores an image at the exported ``(lambda_pix, lambda_sem)`` pair.

``z_H = z_L - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix) = z_L - sum_s w_s * unet_s(z_L)``:

* ``lambda_pix == lambda_sem == A``: one UNet ``unet`` (pix and sem merged) whose ``conv_out`` (the UNet's last
  layer, linear) is scaled by A, so it predicts ``A * eps_full``: ``z_H = z_L - unet(z_L)`` (w = 1).
* otherwise two UNets, ``unet_pix`` (pix merged) with w = A - B and ``unet_full`` (pix and sem merged) with w = B;
  they are not scaled, so another pair needs only other weights.

The weights are in ``pisasr_export.json`` (``"unets": {subfolder: w}``) and the model card.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from pisasr.model.dual_lora import ADAPTERS, DualLoRA

EXPORT_JSON = "pisasr_export.json"
PROMPT_FILE = "prompt_embeds.safetensors"


@dataclass
class UNetPart:
    adapters: tuple[str, ...]  # merged into this UNet
    scale: float  # conv_out is multiplied by this
    weight: float  # z_H = z_L - sum(weight * unet(z_L))


def unet_plan(lambda_pix: float | None, lambda_sem: float | None) -> dict[str, UNetPart]:
    """Which UNets an export holds: one scaled UNet for a given pair with equal lambdas, else pix and full."""
    if lambda_pix is not None and lambda_pix == lambda_sem:
        return {"unet": UNetPart(ADAPTERS, float(lambda_pix), 1.0)}
    a = 1.0 if lambda_pix is None else float(lambda_pix)
    b = 1.0 if lambda_sem is None else float(lambda_sem)
    return {"unet_pix": UNetPart(("pix",), 1.0, a - b), "unet_full": UNetPart(ADAPTERS, 1.0, b)}


@dataclass
class ExportInfo:
    """What a restore needs besides the graphs: written as ``pisasr_export.json``."""

    format: str
    lambda_pix: float
    lambda_sem: float
    unets: dict[str, float]  # subfolder / graph name -> weight w
    pair_fixed: bool  # one scaled UNet: the pair cannot be changed without re-exporting
    timestep: int
    prompt: str
    vae_scaling_factor: float
    upscale: int
    process_size: int
    color_fix: str
    extra: dict = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        (folder / EXPORT_JSON).write_text(json.dumps(asdict(self), indent=2) + "\n")


@torch.no_grad()
def merged_unet(dual: DualLoRA, adapters: tuple[str, ...], scale: float = 1.0):
    """A plain ``UNet2DConditionModel`` (no PEFT layers) with ``adapters`` merged and ``conv_out`` scaled;
    ``dual`` is left unmerged."""
    from diffusers import UNet2DConditionModel

    dual.merge(adapters)
    try:
        state = {
            k.replace(".base_layer.", "."): v.detach().clone()
            for k, v in dual.unet.state_dict().items()
            if "lora_" not in k
        }
    finally:
        dual.unmerge()
    with torch.device("meta"):
        plain = UNet2DConditionModel.from_config(dual.unet.config)
    plain.load_state_dict(state, strict=True, assign=True)
    if scale != 1.0:
        plain.conv_out.weight.mul_(scale)
        plain.conv_out.bias.mul_(scale)
    return plain.eval().requires_grad_(False)


def write_diffusers(
    dual: DualLoRA,
    vae,
    prompt_embeds: torch.Tensor,
    plan: dict[str, UNetPart],
    folder: Path,
) -> None:
    """``folder/<unet>/`` for each part of ``plan``, ``folder/vae/`` and ``folder/prompt_embeds.safetensors``, all
    float32 (merged in float32 as pisasr merges; pass ``torch_dtype`` when loading for half precision)."""
    for name, part in plan.items():
        merged_unet(dual, part.adapters, part.scale).save_pretrained(folder / name)
    vae.save_pretrained(folder / "vae")
    save_file({"prompt_embeds": prompt_embeds.float().contiguous()}, str(folder / PROMPT_FILE))
