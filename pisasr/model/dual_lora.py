"""The two PEFT LoRA adapters on the frozen UNet: ``pix`` (pixel level) and ``sem`` (semantic level).

Stages decide which adapters are active and which one trains:

=======  ===============  =========
stage    active           trainable
=======  ===============  =========
pix      pix              pix
sem      pix + sem        sem
eval     pix + sem        none
=======  ===============  =========

The base weights never require gradients. PEFT's ``set_adapter`` marks every active adapter trainable, so
activation here always re-applies the stage's ``requires_grad`` afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from pisasr.errors import ModelLoadError

ADAPTERS = ("pix", "sem")
STAGES = ("pix", "sem", "eval")

# Layers the official PiSA-SR code adapts: any UNet Linear/Conv2d whose qualified name contains one of these
# (so "conv" covers every convolution), excluding norm layers; biases are never adapted.
LORA_TARGET_PATTERNS = (
    "to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut", "conv_out",
    "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj",
)  # fmt: skip


def lora_target_modules(unet: nn.Module) -> list[str]:
    """Qualified names of the UNet layers both adapters wrap, in module order."""
    return [
        name
        for name, module in unet.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d))
        and "norm" not in name
        and any(pattern in name for pattern in LORA_TARGET_PATTERNS)
    ]


def combine_eps(
    z_lr: torch.Tensor, eps_pix: torch.Tensor, eps_full: torch.Tensor, lambda_pix: float, lambda_sem: float
) -> torch.Tensor:
    """``z_H = z_L - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix)``."""
    return z_lr - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix)


class DualLoRA:
    """Owns the UNet's ``pix`` and ``sem`` adapters: stages, activation, merging and state dicts."""

    def __init__(
        self,
        unet: nn.Module,
        rank_pix: int = 4,
        rank_sem: int = 4,
        alpha_pix: float = 8.0,
        alpha_sem: float = 8.0,
        target_modules: Sequence[str] | None = None,
    ):
        self.unet = unet
        self.ranks = {"pix": int(rank_pix), "sem": int(rank_sem)}
        self.alphas = {"pix": float(alpha_pix), "sem": float(alpha_sem)}
        self.target_modules = (
            list(target_modules) if target_modules is not None else lora_target_modules(unet)
        )
        unet.requires_grad_(False)
        for name in ADAPTERS:
            with (
                warnings.catch_warnings()
            ):  # PEFT warns that a second adapter is being added: that is the design
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                unet.add_adapter(
                    LoraConfig(
                        r=self.ranks[name],
                        lora_alpha=self.alphas[name],
                        init_lora_weights="gaussian",
                        target_modules=self.target_modules,
                    ),
                    adapter_name=name,
                )
        self._merged: tuple[str, ...] = ()
        self.stage = "eval"
        self.set_stage("eval")

    # -- activation and stages -------------------------------------------------------------------------------
    def _lora_layers(self) -> Iterable[BaseTunerLayer]:
        return (m for m in self.unet.modules() if isinstance(m, BaseTunerLayer))

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        marker = f".{name}."
        return [p for n, p in self.unet.named_parameters() if "lora_" in n and marker in n]

    def activate(self, names: Sequence[str]) -> None:
        """Make exactly ``names`` active for the next forward passes; trainability follows the stage."""
        names = list(names)
        if self._merged:
            self.unmerge()
        for layer in self._lora_layers():
            layer.set_adapter(names)
        self._apply_trainable()

    def _apply_trainable(self) -> None:
        trainable = {"pix": "pix", "sem": "sem"}.get(self.stage)
        for name in ADAPTERS:
            for p in self.adapter_parameters(name):
                p.requires_grad_(name == trainable)

    def set_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.stage = stage
        self.activate(["pix"] if stage == "pix" else ["pix", "sem"])

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    # -- merging (inference fast path) -----------------------------------------------------------------------
    def merge(self, names: Sequence[str]) -> None:
        """Fold ``names`` into the base weights: one plain UNet pass, no LoRA overhead, no weight copy."""
        names = tuple(names)
        if self._merged == names:
            return
        if self._merged:
            self.unmerge()
        for layer in self._lora_layers():
            layer.merge(adapter_names=list(names))
        self._merged = names

    def unmerge(self) -> None:
        for layer in self._lora_layers():
            while layer.merged:
                layer.unmerge()
        self._merged = ()

    @property
    def merged(self) -> tuple[str, ...]:
        return self._merged

    @contextmanager
    def subtracting(self, name: str) -> Iterator[None]:
        """Inside, the UNet computes ``(merged weights - name's delta) x`` without touching any weight.

        With both adapters merged, ``subtracting("sem")`` gives the pix-only UNet: the merged layers run as they
        are and ``sem``'s low-rank branch is added with its scaling negated. No weight is copied or rewritten, so
        the merged weights (and every later default-mode output) stay bit-identical.
        """
        if name not in self._merged:
            raise RuntimeError(f"adapter {name!r} is not merged")
        layers = list(self._lora_layers())
        saved = [
            (layer.merged_adapters, list(layer.active_adapters), dict(layer.scaling)) for layer in layers
        ]
        try:
            for layer in layers:
                layer.merged_adapters = []  # PEFT runs the LoRA branches only for layers it believes unmerged
                layer.set_adapter([name])
                layer.scaling[name] = -layer.scaling[name]
            yield
        finally:
            for layer, (merged, active, scaling) in zip(layers, saved):
                layer.merged_adapters = merged
                layer.set_adapter(active)
                layer.scaling.update(scaling)
            self._apply_trainable()

    # -- state dicts -----------------------------------------------------------------------------------------
    def state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """PEFT state dict of one adapter, keys without the adapter name (``...to_q.lora_A.weight``)."""
        if self._merged:
            raise RuntimeError("unmerge before reading adapter weights")
        return {
            k: v.detach().clone() for k, v in get_peft_model_state_dict(self.unet, adapter_name=name).items()
        }

    def load_state_dict(self, name: str, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        if self._merged:
            self.unmerge()
        expected = get_peft_model_state_dict(self.unet, adapter_name=name)
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            detail = f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}"
            raise ModelLoadError(
                f"{source}: adapter '{name}' does not fit this UNet ({len(missing)} missing, "
                f"{len(unexpected)} unexpected tensors, e.g. {detail}); was it trained on another base?"
            )
        for key, tensor in state.items():
            if tuple(tensor.shape) != tuple(expected[key].shape):
                raise ModelLoadError(
                    f"{source}: tensor {key} of adapter '{name}' has shape {tuple(tensor.shape)}, "
                    f"expected {tuple(expected[key].shape)} (rank or base mismatch)"
                )
        set_peft_model_state_dict(self.unet, state, adapter_name=name)

    def metadata(self) -> dict:
        return {
            "rank_pix": self.ranks["pix"],
            "rank_sem": self.ranks["sem"],
            "alpha_pix": self.alphas["pix"],
            "alpha_sem": self.alphas["sem"],
            "target_modules": self.target_modules,
        }
