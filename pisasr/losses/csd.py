"""Classifier score distillation (CSD) with a frozen text-to-image teacher, as in PiSA-SR.

For the predicted latent ``z_H`` (with gradient): ``t ~ U[t_min, t_max)``, ``noisy = add_noise(z_H, noise, t)``;
the teacher predicts noise for [negative prompt, positive prompt]; with classifier-free guidance
``eps_cfg = eps_neg + g * (eps_pos - eps_neg)``, the x0 predictions ``x0_real`` (from ``eps_cfg``) and
``x0_fake`` (from ``eps_neg``) give ``grad = (x0_fake - x0_real) / mean|z_H - x0_real|`` per sample, and the loss
``MSE(z_H, stopgrad(z_H - grad))`` has exactly that gradient direction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler


class CSDLoss:
    def __init__(
        self,
        teacher: torch.nn.Module,
        scheduler: DDPMScheduler,
        guidance_scale: float = 7.5,
        t_min_ratio: float = 0.02,
        t_max_ratio: float = 0.5,
    ):
        self.teacher, self.scheduler, self.guidance_scale = teacher, scheduler, guidance_scale
        steps = scheduler.config.num_train_timesteps
        self.t_min, self.t_max = int(steps * t_min_ratio), int(steps * t_max_ratio)
        self.alphas_cumprod = scheduler.alphas_cumprod.clone()

    def _x0(self, eps: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = self.alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1)
        return (noisy - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()

    def __call__(
        self, z_h: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``positive``/``negative``: prompt embeddings [B, L, D]; ``generator``: CPU generator for t and noise."""
        batch = z_h.shape[0]
        t = torch.randint(self.t_min, self.t_max, (batch,), generator=generator).to(z_h.device)
        noise = torch.randn(z_h.shape, generator=generator, dtype=torch.float32).to(z_h.device)
        latents = z_h.float()
        with torch.no_grad():
            noisy = self.scheduler.add_noise(latents.detach(), noise, t)
            dtype = next(self.teacher.parameters()).dtype
            eps = self.teacher(
                torch.cat([noisy, noisy]).to(dtype),
                torch.cat([t, t]),
                encoder_hidden_states=torch.cat([negative, positive]).to(dtype),
            ).sample.float()
            eps_neg, eps_pos = eps.chunk(2)
            eps_cfg = eps_neg + self.guidance_scale * (eps_pos - eps_neg)
            x0_real = self._x0(eps_cfg, noisy, t)
            x0_fake = self._x0(eps_neg, noisy, t)
        weight = (latents.detach() - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True)
        grad = (x0_fake - x0_real) / weight
        return F.mse_loss(latents, (latents - grad).detach())
