"""Restoring a run from its checkpoints: the newest one that every rank can load, falling back to the one
before when a file is damaged (a truncated optimizer state, a half-written adapter file)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from pisasr.errors import ConfigError
from pisasr.model.checkpoint import load_checkpoint
from pisasr.model.dual_lora import ADAPTERS, DualLoRA
from pisasr.training import checkpoints as ckpts


def _load(accelerator, checkpoint: Path, dual: DualLoRA) -> dict:
    state = ckpts.read_state(checkpoint)
    accelerator.load_state(str(checkpoint))
    restored = load_checkpoint(checkpoint)
    for name in ADAPTERS:
        dual.load_state_dict(name, restored.states[name], source=str(checkpoint))
    return state


def _failed_anywhere(accelerator, failed: bool) -> bool:
    if accelerator.num_processes == 1:
        return failed
    flag = torch.tensor(float(failed), device=accelerator.device)
    return accelerator.reduce(flag, reduction="sum").item() > 0


def restore(accelerator, candidates: list[Path], dual: DualLoRA) -> tuple[Path, dict] | None:
    """Load the first of ``candidates`` (best first) that loads on every rank; ``(checkpoint, trainer state)``,
    or None when there are no candidates. Each one that fails is reported in one line."""
    for checkpoint in candidates:
        try:
            state, problem = _load(accelerator, checkpoint, dual), None
        except Exception as exc:  # any damaged file: torch.load, safetensors and json raise different errors
            state, problem = (
                None,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
        if not _failed_anywhere(accelerator, problem is not None):
            return checkpoint, state
        if problem is not None:
            print(
                f"warning: checkpoint {checkpoint} could not be loaded ({problem}); trying the one before",
                file=sys.stderr,
            )
    if candidates:
        raise ConfigError(f"none of the checkpoints in {candidates[0].parent} could be loaded (see above)")
    return None
