"""The semantic stage's distillation objective, one interface for CSD (PiSA-SR), VSD (OSEDiff) and ADD (AddSR).

An objective sees one generator output (``ObjectiveContext``) and provides:

* ``generator_loss(ctx) -> (weighted loss, parts)``: the term added to ``lambda_l2 * L2 + lambda_lpips * LPIPS``,
  already multiplied by its weight (``train.lambda_<name>``); ``parts`` are the unweighted terms, for the logs.
* an auxiliary network of its own (none for CSD): ``aux_phase`` says when it is trained, ``"before"`` the
  generator's optimizer step (ADD's discriminator) or ``"after"`` it (VSD's fake score), with ``aux_loss(ctx)``,
  ``aux_parameters()`` and ``state_dict()`` / ``load_state_dict()`` (for checkpoints). The optimizer, gradient
  synchronisation between processes and clipping of that network are the training loop's
  (``pisasr/training/aux.py``), so that the loop has no branch per objective.

All randomness comes from ``ctx.generator`` (a CPU ``torch.Generator`` seeded per step), so a step is a pure
function of weights, batch and seed, and a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pisasr.losses.csd import CSDLoss


@dataclass
class ObjectiveContext:
    """One generator output and what the objectives may need of the batch.

    ``z``: the predicted latent z_H (scaled by the VAE factor, with gradient); ``image``: its decoding, clamped to
    [-1, 1] (with gradient); ``hr`` and ``lr``: the target and the model input in [-1, 1]; ``positive`` and
    ``negative``: prompt embeddings of the HR caption (with the positive suffix) and of the negative prompt;
    ``decode``: latents -> images in [-1, 1] with the frozen VAE (the teacher's predictions)."""

    z: torch.Tensor
    image: torch.Tensor
    hr: torch.Tensor
    lr: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    generator: torch.Generator
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None
    cache: dict = field(default_factory=dict)  # what the objective computes once per step (ADD's condition)


class SemanticObjective:
    """Base class: no auxiliary network."""

    name = "none"
    aux_phase: str | None = None  # "before" | "after" | None

    def generator_loss(self, ctx: ObjectiveContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def aux_loss(self, ctx: ObjectiveContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError(f"objective {self.name!r} has no auxiliary network")

    def aux_parameters(self) -> list[torch.nn.Parameter]:
        return []

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"objective {self.name!r} holds no state, got {sorted(state)[:3]}")


class CSDObjective(SemanticObjective):
    """PiSA-SR's classifier score distillation (``CSDLoss``, csslc/PiSA-SR ``pisasr.py:132-171``), unchanged:
    ``weight * CSD(z_H, positive, negative)``."""

    name = "csd"

    def __init__(self, csd: CSDLoss, weight: float = 1.0):
        self.csd, self.weight = csd, weight

    def generator_loss(self, ctx: ObjectiveContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.csd(ctx.z, ctx.positive, ctx.negative, ctx.generator)
        return self.weight * loss, {"csd": loss}


def x0_from_eps(
    eps: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """The epsilon-prediction's clean estimate ``(z_t - sqrt(1 - a) eps) / sqrt(a)``, ``a = alphas_cumprod[t]``."""
    alpha_bar = alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1)
    return (noisy - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
