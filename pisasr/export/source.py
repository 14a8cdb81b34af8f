"""What every export starts from: the checkpoint, checked against the config's base, on that base's UNet; and
how every export ends: written under a temporary name beside the output, renamed when complete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from pisasr.errors import ConfigError
from pisasr.io import files
from pisasr.model.base import FrozenBase, encode_prompts, ensure_tiny_base, load_base, load_text_encoder
from pisasr.model.checkpoint import AdapterCheckpoint, check_base, load_checkpoint
from pisasr.model.dual_lora import DualLoRA

TRAINING_CONFIG = "config.yaml"  # what a training run writes beside checkpoints/ and final/


@dataclass
class Source:
    cfg: DictConfig
    ckpt: AdapterCheckpoint
    base: FrozenBase
    dual: DualLoRA

    @property
    def training_config(self) -> str | None:
        """The run's ``config.yaml`` when the weights are a run's ``final/`` or ``checkpoints/checkpoint-N``."""
        for folder in list(self.ckpt.path.parents)[:3]:
            if (folder / TRAINING_CONFIG).is_file():
                return (folder / TRAINING_CONFIG).read_text()
        return None

    @torch.no_grad()
    def prompt_embedding(self) -> torch.Tensor:
        """The CLIP embedding of the config's prompt (empty by default, as the paper), [1, 77, C] float32."""
        tokenizer, encoder = load_text_encoder(self.cfg.model.base, self.cfg.model.revision)
        return encode_prompts(tokenizer, encoder, [self.cfg.inference.prompt]).float().cpu()


def check_output_free(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise ConfigError(f"output {out} exists; remove it or choose another -o (an export never overwrites)")


def load_source(cfg: DictConfig) -> Source:
    """The checkpoint (pisasr folder/file or official .pkl) built on the config's base, in float32 on the CPU;
    a checkpoint that is unreadable, lacks metadata or was trained on another base stops here."""
    m = cfg.model
    if not m.weights:
        raise ConfigError(
            "export needs --weights: a pisasr checkpoint (folder or .safetensors) or official .pkl"
        )
    ckpt = load_checkpoint(m.weights)
    if not m.allow_base_mismatch:
        check_base(ckpt, m.base)
    if m.tiny_base_if_missing:
        ensure_tiny_base(m.base)
    base = load_base(m.base, revision=m.revision, text_encoder=False)
    if not m.allow_base_mismatch:
        check_base(ckpt, m.base, base.fingerprint)
    return Source(cfg=cfg, ckpt=ckpt, base=base, dual=ckpt.build(base.unet))


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """``pisasr.io.files.staged_folder`` for exports: an existing ``out`` is refused, before and after."""
    check_output_free(out)
    with files.staged_folder(out, exists="refuse") as tmp:
        yield tmp
        check_output_free(out)  # made by someone else meanwhile
