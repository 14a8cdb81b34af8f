"""Writing a training checkpoint from every rank: verified identical adapters, Accelerate's state, our adapter
file, then an atomic rename (``checkpoints.finalize``) and pruning of this run's oldest checkpoints."""

from __future__ import annotations

import hashlib
import shutil
from contextlib import nullcontext
from pathlib import Path

from omegaconf import DictConfig

from pisasr.errors import PiSAError
from pisasr.model.checkpoint import save_checkpoint
from pisasr.model.dual_lora import ADAPTERS, DualLoRA
from pisasr.training import checkpoints as ckpts


class TrainingError(PiSAError):
    """A run that cannot go on (non-finite loss, ranks out of sync)."""


def adapter_digest(dual: DualLoRA) -> str:
    digest = hashlib.sha256()
    for name in ADAPTERS:
        for key, tensor in sorted(dual.state_dict(name).items()):
            digest.update(key.encode())
            digest.update(tensor.float().cpu().numpy().tobytes())
    return digest.hexdigest()


def save(
    accelerator,
    cfg: DictConfig,
    dual: DualLoRA,
    state: dict,
    base_fingerprint: str | None = None,
    extras=None,
) -> Path | None:
    """Checkpoint every rank's state at ``state["step"]`` (``state`` goes to ``trainer_state.json``: step, stage,
    batches_seen, run_id); first check that all ranks hold the same adapters and the same objective network
    (``extras``: ``training/aux.py``; a desync is a bug). The adapter file holds ``extras``' inference weights (the
    EMA when on). Returns the checkpoint folder on the main process."""
    from accelerate.utils import gather_object

    step, stage = state["step"], state["stage"]
    gather = gather_object if accelerator.num_processes > 1 else (lambda x: x)
    digests = gather([adapter_digest(dual)])
    if len(set(digests)) > 1:
        raise TrainingError(
            f"adapters differ between processes at step {step} ({stage} stage): gradients were not synchronised"
        )
    if extras is not None and extras.aux is not None:
        state = {**state, "rank_objective_digests": gather([extras.digest()])}
        if len(set(state["rank_objective_digests"])) > 1:
            raise TrainingError(
                f"the {extras.objective.name} network differs between processes at step {step}"
            )
    out = cfg.train.output_dir
    staging = ckpts.staging_dir(out, step)
    if accelerator.is_main_process and staging.exists():  # left by a run killed while saving
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    path = None
    if accelerator.is_main_process:
        with extras.inference_weights() if extras is not None else nullcontext():
            save_checkpoint(
                dual,
                staging,
                base_model=cfg.model.base,
                base_fingerprint=base_fingerprint,
                timestep=cfg.model.timestep,
                extra={"step": step, "stage": stage},
            )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = ckpts.finalize(out, step, {**state, "rank_adapter_digests": digests})
        ckpts.prune(out, cfg.train.checkpoints_total_limit, state["run_id"])
    accelerator.wait_for_everyone()
    return path
