"""AddSR's timestep-adaptive adversarial diffusion distillation (TA-ADD), for a one-step generator.

Following NJU-PCALab/AddSR ``train_addsr.py`` (the loop at ``:1406-1512``):

* Discriminator step first in each iteration (``:1448-1479``): hinge loss
  ``mean relu(1 - D(HR)) + mean relu(1 + D(x_hat.detach()))``, D and its condition as in ``discriminator.py``; its
  own AdamW (lr 2e-5, betas (0.9, 0.999), weight decay 1e-2, ``:1114-1120``), no clipping. AddSR leaves the
  generator term's gradients in the heads until its next discriminator step adds to them; here the heads do not
  require gradients during the generator's term, so no generator gradient reaches them, and the discriminator's
  gradients are set to None after each of its steps (``pisasr/training/aux.py``).
* Generator (``:1481-1504``): ``0.02 * (-mean D(x_hat))`` plus the distillation term: ``teacher_draws`` = 4
  timesteps per sample, tau ~ U[0, 1000) (``:1407``, drawn as one ``[4B]`` vector split into 4 chunks of B); the
  student's latent re-noised with one noise shared by the 4 draws (``:1411-1414``); the frozen teacher's x0 (no CFG)
  decoded to [0, 1] and clamped as the target (``:1417-1445,1494-1497``); the squared error against the decoded
  student image in [0, 1], weighted by ``sqrt(alpha_bar_tau)`` (``get_weights``, ``utils/scheduling_ddpm.py:500-514``),
  averaged over pixels and the draws for each sample, times the timestep-adaptive weight of that sample, then
  averaged over the batch (``:1500-1504``).
* TA weight (``TA_weight``, ``:78-89``): ``0.5 * 2.1 ** (s - 1)`` with s = 1, 2, 3 for a student step from
  t = 999, 749, 499 and s = 4 otherwise (AddSR's single-step branch). pisasr's generator takes one step, so its
  step index is 4 (weight 4.6305); ``ta_weight`` keeps the function for a multi-step student.

The teacher differs from AddSR's: there it is SeeSR's ControlNet + UNet conditioned on the HR image; here it is the
frozen SD teacher prompted with the HR image's caption (the positive prompt, as CSD's positive branch), with no
image condition (docs/objectives.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from pisasr.losses.discriminator import Dinov2Condition, ProjectedDiscriminator
from pisasr.losses.objectives import ObjectiveContext, SemanticObjective, x0_from_eps

STUDENT_TIMESTEPS = {999: 1, 749: 2, 499: 3}  # AddSR's student steps; any other t is its one-step branch (4)


def student_step_index(t: int) -> int:
    return STUDENT_TIMESTEPS.get(int(t), 4)


def ta_weight(step_index: int) -> float:
    """AddSR's timestep-adaptive weight of the distillation term: ``0.5 * 2.1 ** (s - 1)``."""
    return 0.5 * 2.1 ** (step_index - 1)


def hinge_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def adversarial_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


class ADDObjective(SemanticObjective):
    name = "add"
    aux_phase = "before"

    def __init__(
        self,
        teacher: torch.nn.Module,
        scheduler: DDPMScheduler,
        discriminator: ProjectedDiscriminator,
        condition: Dinov2Condition,
        weight: float = 1.0,
        adversarial_weight: float = 0.02,
        distillation_weight: float = 1.0,
        teacher_draws: int = 4,
        student_step: int = 4,
    ):
        self.teacher, self.scheduler, self.weight = teacher, scheduler, weight
        self.discriminator, self.condition = discriminator, condition
        self.adversarial_weight, self.distillation_weight = adversarial_weight, distillation_weight
        self.teacher_draws, self.student_step = teacher_draws, student_step
        self.alphas_cumprod = scheduler.alphas_cumprod.clone()
        self.steps = scheduler.config.num_train_timesteps
        teacher.requires_grad_(False)
        discriminator.heads.train()

    def _condition(self, ctx: ObjectiveContext) -> torch.Tensor:
        if "dinov2" not in ctx.cache:
            ctx.cache["dinov2"] = self.condition(ctx.lr).detach()
        return ctx.cache["dinov2"]

    # -- the discriminator's step ----------------------------------------------------------------------------
    def aux_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.discriminator.heads.parameters())

    def aux_loss(self, ctx: ObjectiveContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self._condition(ctx)
        real = self.discriminator(ctx.hr, c, ctx.generator)
        fake = self.discriminator(ctx.image.detach(), c, ctx.generator)
        loss = hinge_discriminator_loss(real, fake)
        return loss, {"add_d": loss}

    # -- the generator's term --------------------------------------------------------------------------------
    def distillation_loss(self, ctx: ObjectiveContext) -> torch.Tensor:
        z = ctx.z.detach().float()
        batch, draws = z.shape[0], self.teacher_draws
        taus = torch.randint(0, self.steps, (batch * draws,), generator=ctx.generator).to(z.device)
        noise = torch.randn(z.shape, generator=ctx.generator, dtype=torch.float32).to(z.device)
        student = ctx.image / 2 + 0.5
        dtype = next(self.teacher.parameters()).dtype
        per_sample = torch.zeros(batch, device=z.device)
        for tau in taus.split(batch):
            with torch.no_grad():
                noisy = self.scheduler.add_noise(z, noise, tau)
                eps = self.teacher(
                    noisy.to(dtype), tau, encoder_hidden_states=ctx.positive.to(dtype)
                ).sample.float()
                target = ctx.decode(x0_from_eps(eps, noisy, tau, self.alphas_cumprod)) / 2 + 0.5
            scale = self.alphas_cumprod.to(z.device)[tau].sqrt().view(-1, 1, 1, 1)
            per_sample = per_sample + ((target - student) ** 2 * scale).mean(dim=(1, 2, 3))
        return (per_sample / draws).mean() * ta_weight(self.student_step)

    def generator_loss(self, ctx: ObjectiveContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self._condition(ctx)
        heads = self.discriminator.heads
        heads.requires_grad_(False)
        try:
            adversarial = adversarial_generator_loss(self.discriminator(ctx.image, c, ctx.generator))
        finally:
            heads.requires_grad_(True)
        distillation = self.distillation_loss(ctx)
        total = self.distillation_weight * distillation + self.adversarial_weight * adversarial
        return self.weight * total, {"add_distill": distillation, "add_adv": adversarial}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.discriminator.heads.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.discriminator.heads.load_state_dict(state)
