"""Variational score distillation (VSD) as OSEDiff computes it, with the fake score as a LoRA on the teacher.

Following cswry/OSEDiff (``osediff.py`` ``OSEDiff_reg``; ``train_osediff.py:270-305``):

* Generator term (``distribution_matching_loss``, ``osediff.py:206-243``): ``t ~ U[20, 980)``,
  ``z_t = add_noise(z, eps, t)``; without gradient, ``x0_fake`` from the fake score with the caption (no CFG) and
  ``x0_real`` from the frozen teacher with CFG (negative prompt as the unconditional branch, the caption as the
  conditional; ``cfg_vsd`` 7.5); ``w = mean_CHW |z - x0_real|`` per sample, ``grad = (x0_fake - x0_real) / w`` and
  the loss ``MSE(z, stopgrad(z - grad))``, whose gradient is ``2 grad / numel(z)``.
* Fake-score term (``diff_loss``, ``osediff.py:178-194``): the plain epsilon-MSE of the fake score on the detached
  generator latents and the detached caption, ``t ~ U[0, 1000)``, no CFG; trained by its own AdamW (lr 5e-5, clip
  1.0) after the generator's step, on the same latents (``train_osediff.py:296-305``).

OSEDiff keeps the fake score as a second full UNet carrying a rank-4 LoRA (gaussian init: LoRA B = 0, so it starts
equal to SD). Here it is one more PEFT adapter, ``fake``, on the frozen teacher itself, switched on for the fake
passes and off for the real pass (PEFT then runs the base layers alone, so the real pass is the teacher's to the
bit): VSD costs one LoRA, not a second UNet. Its targets are the generator adapters' (every attention projection,
convolution and feed-forward layer: ``pisasr/model/dual_lora.py``), a superset of OSEDiff's split.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from pisasr.losses.objectives import ObjectiveContext, SemanticObjective, x0_from_eps
from pisasr.model.dual_lora import lora_target_modules

FAKE = "fake"


class VSDObjective(SemanticObjective):
    name = "vsd"
    aux_phase = "after"

    def __init__(
        self,
        teacher: torch.nn.Module,
        scheduler: DDPMScheduler,
        weight: float = 1.0,
        guidance_scale: float = 7.5,
        t_min: int = 20,
        t_max: int = 980,
        fake_weight: float = 1.0,
        rank: int = 4,
        alpha: float = 8.0,
        seed: int = 0,
    ):
        self.teacher, self.scheduler, self.weight = teacher, scheduler, weight
        self.guidance_scale, self.fake_weight = guidance_scale, fake_weight
        self.t_min, self.t_max = t_min, t_max
        self.alphas_cumprod = scheduler.alphas_cumprod.clone()
        self.steps = scheduler.config.num_train_timesteps
        teacher.requires_grad_(False)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():  # the same init on every rank
            torch.manual_seed(seed)
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            teacher.add_adapter(
                LoraConfig(
                    r=rank,
                    lora_alpha=alpha,
                    init_lora_weights="gaussian",
                    target_modules=lora_target_modules(teacher),
                ),
                adapter_name=FAKE,
            )
        for param in self.aux_parameters():
            param.data = param.data.float()
        self._switch(False)

    # -- the fake score: the teacher with its adapter on ---------------------------------------------------------
    def aux_parameters(self) -> list[torch.nn.Parameter]:
        marker = f".{FAKE}."
        return [p for n, p in self.teacher.named_parameters() if "lora_" in n and marker in n]

    def _switch(self, on: bool) -> None:
        if on:
            self.teacher.enable_adapters()
            self.teacher.set_adapter(FAKE)
        else:
            self.teacher.disable_adapters()
        for param in self.aux_parameters():  # PEFT toggles requires_grad with the adapters; it always trains
            param.requires_grad_(True)

    @contextmanager
    def fake_score(self) -> Iterator[torch.nn.Module]:
        """The teacher with the ``fake`` adapter on; off again (the plain teacher) on exit."""
        self._switch(True)
        try:
            yield self.teacher
        finally:
            self._switch(False)

    def _eps(self, noisy, t, embeddings) -> torch.Tensor:
        dtype = next(self.teacher.parameters()).dtype
        return self.teacher(noisy.to(dtype), t, encoder_hidden_states=embeddings.to(dtype)).sample.float()

    # -- the generator's term --------------------------------------------------------------------------------
    def generator_loss(self, ctx: ObjectiveContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = ctx.z.float()
        batch = z.shape[0]
        t = torch.randint(self.t_min, self.t_max, (batch,), generator=ctx.generator).to(z.device)
        noise = torch.randn(z.shape, generator=ctx.generator, dtype=torch.float32).to(z.device)
        with torch.no_grad():
            noisy = self.scheduler.add_noise(z.detach(), noise, t)
            with self.fake_score():
                x0_fake = x0_from_eps(self._eps(noisy, t, ctx.positive), noisy, t, self.alphas_cumprod)
            eps_neg, eps_pos = self._eps(
                torch.cat([noisy, noisy]), torch.cat([t, t]), torch.cat([ctx.negative, ctx.positive])
            ).chunk(2)
            eps_real = eps_neg + self.guidance_scale * (eps_pos - eps_neg)
            x0_real = x0_from_eps(eps_real, noisy, t, self.alphas_cumprod)
        weight = (z.detach() - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True)
        grad = (x0_fake - x0_real) / weight
        loss = F.mse_loss(z, (z - grad).detach())
        return self.weight * loss, {"vsd": loss}

    # -- the fake score's own step ---------------------------------------------------------------------------
    def aux_loss(self, ctx: ObjectiveContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z, prompt = ctx.z.detach().float(), ctx.positive.detach()
        t = torch.randint(0, self.steps, (z.shape[0],), generator=ctx.generator).to(z.device)
        noise = torch.randn(z.shape, generator=ctx.generator, dtype=torch.float32).to(z.device)
        noisy = self.scheduler.add_noise(z, noise, t)
        with self.fake_score():
            loss = F.mse_loss(self._eps(noisy, t, prompt), noise)
        return self.fake_weight * loss, {"vsd_fake": loss}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().clone()
            for k, v in get_peft_model_state_dict(self.teacher, adapter_name=FAKE).items()
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        set_peft_model_state_dict(self.teacher, state, adapter_name=FAKE)
