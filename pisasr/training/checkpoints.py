"""Training checkpoints on disk: ``output_dir/checkpoints/checkpoint-<step>/``.

Each holds Accelerate's state (optimizer, LR scheduler, RNG, dataloader position) plus our adapter weights as
``pisasr_adapters.safetensors`` (the inference format: ``--weights`` takes the folder) and ``trainer_state.json``
(step, stage, and the id of the run that wrote it). A folder is written under a temporary name and renamed when
complete, so a killed run never leaves a half checkpoint that ``latest`` or ``auto`` would pick. Pruning deletes
only checkpoints carrying this run's id.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from pisasr.errors import ConfigError

STATE_NAME = "trainer_state.json"
PREFIX = "checkpoint-"
# What a training run writes into its output folder (and all that train.overwrite_output_dir deletes).
RUN_OUTPUTS = ("checkpoints", "final", "logs", "config.yaml")


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def _step_of(path: Path) -> int | None:
    number = path.name[len(PREFIX) :]
    return int(number) if path.name.startswith(PREFIX) and number.isdigit() else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and _step_of(p) is not None and (p / STATE_NAME).is_file()
    ]
    return sorted(found, key=_step_of)


def new_run_id() -> str:
    return uuid.uuid4().hex


def resume_candidates(output_dir: str | Path, resume: str | None) -> list[Path]:
    """Checkpoints to try, best first; ``[]``: start a new run.

    ``auto``: the complete checkpoints of ``output_dir``, newest first (none: a new run); ``latest``: the same,
    but none is an error; a path: that checkpoint only."""
    if not resume:
        return []
    if resume in ("auto", "latest"):
        found = list_checkpoints(output_dir)[::-1]
        if not found and resume == "latest":
            raise ConfigError(
                f"train.resume_from_checkpoint=latest: no complete checkpoint in {checkpoint_root(output_dir)} "
                "(auto starts a new run when there is none)"
            )
        return found
    path = Path(resume)
    if not (path / STATE_NAME).is_file():
        raise ConfigError(
            f"train.resume_from_checkpoint={resume!r} is not a checkpoint folder (no {STATE_NAME})"
        )
    return [path]


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_NAME).read_text())


def holds_a_run(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds complete checkpoints or final adapters of some run (a partial checkpoint,
    left by a run killed during its first save, is not one: ``auto`` then starts that run afresh)."""
    return bool(list_checkpoints(output_dir)) or (Path(output_dir) / "final").exists()


def refuse_another_run(output_dir: str | Path) -> None:
    """A new (not resumed) run may not mix with another run's checkpoints."""
    if holds_a_run(output_dir):
        raise ConfigError(
            f"{output_dir} already holds another training run's checkpoints: resume it with "
            "train.resume_from_checkpoint=auto, or replace it with train.overwrite_output_dir=true"
        )


def clear_run_outputs(output_dir: str | Path) -> None:
    """Delete what a previous run wrote (``RUN_OUTPUTS`` only, nothing else in the folder)."""
    for name in RUN_OUTPUTS:
        path = Path(output_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def checkpoint_path(output_dir: str | Path, step: int) -> Path:
    return checkpoint_root(output_dir) / f"{PREFIX}{step}"


def staging_dir(output_dir: str | Path, step: int) -> Path:
    return checkpoint_root(output_dir) / f".{PREFIX}{step}.partial"


def finalize(output_dir: str | Path, step: int, state: dict) -> Path:
    """Write the state file into the staging folder and move it into place."""
    staging = staging_dir(output_dir, step)
    (staging / STATE_NAME).write_text(json.dumps(state, indent=2))
    final = checkpoint_path(output_dir, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def _run_id_of(checkpoint: Path) -> str | None:
    try:
        return read_state(checkpoint).get("run_id")
    except (OSError, ValueError):
        return None


def prune(output_dir: str | Path, keep: int | None, run_id: str) -> None:
    """Delete this run's oldest checkpoints so that at most ``keep`` of them remain (None: keep all)."""
    if keep is None:
        return
    own = [p for p in list_checkpoints(output_dir) if _run_id_of(p) == run_id]
    for old in own[: max(0, len(own) - keep)]:
        shutil.rmtree(old)
