"""Helpers for tests and benchmarks: non-trivial adapter weights and an official-format checkpoint."""

from __future__ import annotations

import warnings

import torch
from peft import LoraConfig
from torch import nn

from pisasr.model.dual_lora import LORA_TARGET_PATTERNS


@torch.no_grad()
def randomize_lora(unet: nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Give every LoRA tensor (A and B) random values, so that adapters change the output."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in sorted(unet.named_parameters()):
        if "lora_" in name:
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def official_module_groups(unet: nn.Module) -> dict[str, list[str]]:
    """The official training code's split of LoRA targets into encoder / decoder / others (by parameter name)."""
    groups: dict[str, list[str]] = {"encoder": [], "decoder": [], "others": []}
    for name, _ in unet.named_parameters():
        if "bias" in name or "norm" in name:
            continue
        for pattern in LORA_TARGET_PATTERNS:
            if pattern in name and ("down_blocks" in name or "conv_in" in name):
                groups["encoder"].append(name.replace(".weight", ""))
                break
            if pattern in name and ("up_blocks" in name or "conv_out" in name):
                groups["decoder"].append(name.replace(".weight", ""))
                break
            if pattern in name:
                groups["others"].append(name.replace(".weight", ""))
                break
    return groups


def add_official_adapters(unet: nn.Module, rank_pix: int = 4, rank_sem: int = 4) -> dict[str, list[str]]:
    """Six PEFT adapters ``default_{encoder,decoder,others}_{pix,sem}`` as the official code adds them."""
    groups = official_module_groups(unet)
    unet.requires_grad_(False)
    with warnings.catch_warnings():  # PEFT warns on every adapter after the first
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        for name, rank in (("pix", rank_pix), ("sem", rank_sem)):
            for part, modules in groups.items():
                unet.add_adapter(
                    LoraConfig(r=rank, init_lora_weights="gaussian", target_modules=modules),
                    adapter_name=f"default_{part}_{name}",
                )
    return groups


def official_checkpoint_dict(
    unet: nn.Module, groups: dict[str, list[str]], rank_pix: int = 4, rank_sem: int = 4
) -> dict:
    """What the official ``save_model`` writes: ranks, six module lists, and the LoRA tensors of the UNet."""
    sd = {"lora_rank_unet_pix": rank_pix, "lora_rank_unet_sem": rank_sem}
    for name in ("pix", "sem"):
        for part, modules in groups.items():
            sd[f"unet_lora_{part}_modules_{name}"] = list(modules)
    sd["state_dict_unet"] = {k: v.clone() for k, v in unet.state_dict().items() if "lora" in k}
    return sd
