"""The frozen Stable Diffusion base, the two LoRA adapters and their checkpoints."""

from pisasr.model.base import FrozenBase, load_base
from pisasr.model.dual_lora import ADAPTERS, DualLoRA, lora_target_modules

__all__ = ["ADAPTERS", "DualLoRA", "FrozenBase", "load_base", "lora_target_modules"]
