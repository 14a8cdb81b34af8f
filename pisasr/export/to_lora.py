"""``--to lora``: ``OUT/pix`` and ``OUT/sem``, each a diffusers LoRA folder (``pytorch_lora_weights.safetensors``).

Written with diffusers' own ``StableDiffusionPipeline.save_lora_weights`` from PEFT's per-adapter state dict, with
the adapter's ``LoraConfig`` as metadata, so rank, alpha and target layers travel with the weights and
``load_lora_weights(folder, adapter_name=...)`` / ``UNet2DConditionModel.load_lora_adapter(folder, prefix="unet",
weight_name="pytorch_lora_weights.safetensors", adapter_name=...)`` rebuild exactly our adapter (diffusers'
``load_lora_adapter`` looks for the ``.bin`` unless given the safetensors name or ``use_safetensors=True``). pisasr's ``eps_pix`` is the UNet with ``pix`` active, its
``eps_full`` the UNet with ``pix`` and ``sem`` active at weight 1 each.
"""

from __future__ import annotations

from pathlib import Path

from peft.utils import get_peft_model_state_dict

from pisasr.model.dual_lora import ADAPTERS, DualLoRA


def write_lora_folders(dual: DualLoRA, folder: Path) -> dict[str, Path]:
    """``folder/pix`` and ``folder/sem`` from ``dual`` (unmerged); returns adapter name -> folder."""
    from diffusers import StableDiffusionPipeline

    if dual.merged:
        dual.unmerge()
    out = {}
    for name in ADAPTERS:
        config = dual.unet.peft_config[name].to_dict()
        # PEFT may have shortened the set of targets to name suffixes; the metadata names every layer
        config["target_modules"] = list(dual.target_modules)
        state = {
            k: v.detach().cpu().contiguous()
            for k, v in get_peft_model_state_dict(dual.unet, adapter_name=name).items()
        }
        StableDiffusionPipeline.save_lora_weights(
            folder / name, unet_lora_layers=state, unet_lora_adapter_metadata=config
        )
        out[name] = folder / name
    return out
