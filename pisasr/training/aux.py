"""What the training loop does with the semantic objective's own network (``pisasr/losses/objectives.py``).

``TrainingExtras`` is the loop's one handle on everything beyond the adapters and their optimizer: the objective's
auxiliary step (ADD's discriminator before the generator's step, VSD's fake score after it), trained by
``AuxTrainer`` (its own AdamW, fp16 loss scaling, gradients averaged over processes, clipping, gradient
accumulation as the generator's), and the adapters' EMA (``ema.py``). Its ``state_dict`` (the objective's network,
the optimizer, the scaler, the EMA) is registered with Accelerate's checkpointing, so ``save_state`` /
``load_state`` carry it and a resume is exact; a run with nothing extra (CSD without EMA) registers nothing, so its
checkpoints are what they were.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext

import torch

from pisasr.losses.objectives import ObjectiveContext, SemanticObjective
from pisasr.training.ema import AdapterEMA


def all_reduce_grads(params: list[torch.nn.Parameter], accelerator) -> None:
    """Average the gradients of ``params`` over processes (one flat all-reduce; nothing with one process)."""
    grads = [p.grad for p in params if p.grad is not None]
    if accelerator.num_processes == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= accelerator.num_processes
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(params: list[torch.nn.Parameter], accelerator) -> None:
    if accelerator.num_processes > 1:
        for param in params:
            torch.distributed.broadcast(param.data, src=0)


class AuxTrainer:
    """One optimizer step of the objective's network per generator step (on its last micro-batch)."""

    def __init__(self, objective: SemanticObjective, accelerator, optimizer: torch.optim.Optimizer, max_norm):
        self.objective, self.accelerator, self.optimizer = objective, accelerator, optimizer
        self.max_norm = max_norm
        fp16 = accelerator.mixed_precision == "fp16"
        self.scaler = torch.amp.GradScaler(accelerator.device.type, enabled=fp16)

    def step(self, ctx: ObjectiveContext) -> dict[str, torch.Tensor]:
        acc, params = self.accelerator, self.objective.aux_parameters()
        with acc.autocast():
            loss, parts = self.objective.aux_loss(ctx)
        self.scaler.scale(loss / acc.gradient_accumulation_steps).backward()
        if acc.sync_gradients:
            self.scaler.unscale_(self.optimizer)
            all_reduce_grads(params, acc)
            if self.max_norm:
                torch.nn.utils.clip_grad_norm_(params, self.max_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        return {k: v.detach() for k, v in parts.items()}


class TrainingExtras:
    def __init__(
        self, objective: SemanticObjective | None, aux: AuxTrainer | None, ema: AdapterEMA | None = None
    ):
        self.objective, self.aux, self.ema = objective, aux, ema

    @property
    def has_state(self) -> bool:
        return self.aux is not None or self.ema is not None

    def _phase(self, phase: str) -> bool:
        return self.aux is not None and self.objective.aux_phase == phase

    def before_objective(self, ctx: ObjectiveContext) -> dict[str, torch.Tensor]:
        """Called by ``PiSATrainModel.losses`` between the generator's forward and the objective's term."""
        return self.aux.step(ctx) if self._phase("before") else {}

    def after_generator_step(self, ctx: ObjectiveContext | None, stepped: bool) -> dict[str, torch.Tensor]:
        """After the generator's ``optimizer.step()`` (``stepped``: a real step, not an accumulation)."""
        logs = self.aux.step(ctx) if ctx is not None and self._phase("after") else {}
        if stepped and self.ema is not None:
            self.ema.update()
        return logs

    def inference_weights(self):
        """Context in which the adapters hold what checkpoints and ``final/`` save (the EMA when on)."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    def after_restore(self) -> None:
        if self.ema is not None:
            self.ema.restore_live()

    def digest(self) -> str:
        """Of the objective's network: identical on every rank when its gradients are synchronised."""
        digest = hashlib.sha256()
        state = self.objective.state_dict() if self.objective is not None else {}
        for key, tensor in sorted(state.items()):
            digest.update(key.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def state_dict(self) -> dict:
        state = {}
        if self.aux is not None:
            state["objective"] = self.objective.state_dict()
            state["optimizer"] = self.aux.optimizer.state_dict()
            state["scaler"] = self.aux.scaler.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.aux is not None:
            self.objective.load_state_dict(state["objective"])
            self.aux.optimizer.load_state_dict(state["optimizer"])
            if state["scaler"]:
                self.aux.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
