"""Training checkpoints on disk: ``output_dir/checkpoints/checkpoint-<step>/``.

Each holds Accelerate's state (optimizer, LR scheduler, RNG, dataloader position) plus our adapter weights as
``pisasr_adapters.safetensors`` (the inference format: ``--weights`` takes the folder) and ``trainer_state.json``
(step, stage). A folder is written under a temporary name and renamed when complete, so a killed run never leaves
a half checkpoint that ``latest`` would pick.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pisasr.errors import ConfigError

STATE_NAME = "trainer_state.json"
PREFIX = "checkpoint-"


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_NAME).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """``latest`` -> newest complete checkpoint (None if there is none yet); a path -> that checkpoint."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_NAME).is_file():
        raise ConfigError(
            f"train.resume_from_checkpoint={resume!r} is not a checkpoint folder (no {STATE_NAME})"
        )
    return path


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_NAME).read_text())


def staging_dir(output_dir: str | Path, step: int) -> Path:
    return checkpoint_root(output_dir) / f".{PREFIX}{step}.partial"


def finalize(output_dir: str | Path, step: int, state: dict) -> Path:
    """Write the state file into the staging folder and move it into place."""
    staging = staging_dir(output_dir, step)
    (staging / STATE_NAME).write_text(json.dumps(state, indent=2))
    final = checkpoint_root(output_dir) / f"{PREFIX}{step}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def prune(output_dir: str | Path, keep: int | None) -> None:
    """Delete the oldest checkpoints so that at most ``keep`` remain (None: keep all)."""
    if keep is None:
        return
    found = list_checkpoints(output_dir)
    for old in found[: max(0, len(found) - keep)]:
        shutil.rmtree(old)
