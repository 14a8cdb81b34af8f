"""What one training step computes, for either stage, independent of processes and checkpoints.

``pix`` stage: ``z_H = z_L - eps_pix`` and ``lambda_l2 * MSE(decode(z_H), x_HR)``; no LPIPS, no CSD, and the
teacher is never run. ``sem`` stage: ``z_H = z_L - eps_full`` and ``lambda_l2 * L2 + lambda_lpips * LPIPS +`` the
semantic objective's weighted term (``train.sem_objective``, ``pisasr/losses/objectives.py``; by default
``lambda_csd * CSD``). Images are in [-1, 1]; the decoded prediction is clamped to [-1, 1] before L2 and LPIPS, as
the official code. Prompts follow the official code too: the caption becomes ``f"{caption}, {suffix}"`` for
both the generator and CSD's positive branch (an empty caption gives just the suffix, or with
``join_empty_caption`` the official ``", "`` + suffix), and the generator's prompts are dropped to "" all together with
probability ``null_text_ratio`` (per sample with ``null_text_per_sample``). All randomness (prompt dropping, the VAE posterior sample, CSD's t and
noise) comes from the generator passed in, so a step is a pure function of weights, batch and seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pisasr.losses.csd import CSDLoss
from pisasr.losses.objectives import CSDObjective, ObjectiveContext, SemanticObjective
from pisasr.model.base import FrozenBase, encode_prompts
from pisasr.model.dual_lora import DualLoRA


@dataclass
class LossWeights:
    l2: float = 1.0
    lpips: float = 2.0
    csd: float = 1.0


class PiSATrainModel:
    def __init__(
        self,
        base: FrozenBase,
        dual: DualLoRA,
        lpips: torch.nn.Module | None,
        csd: CSDLoss | None,
        weights: LossWeights,
        negative_prompt: str,
        *,
        positive_suffix: str = "",
        join_empty_caption: bool = False,
        null_text_ratio: float = 0.5,
        null_text_per_sample: bool = False,
        vae_sample: bool = True,
        timestep: int = 1,
        objective: SemanticObjective | None = None,
    ):
        self.base, self.dual, self.lpips, self.csd, self.weights = base, dual, lpips, csd, weights
        # ``csd`` alone (the default objective) is CSD weighted by ``weights.csd``
        self.objective = objective or (CSDObjective(csd, weights.csd) if csd is not None else None)
        self.positive_suffix, self.null_text_ratio = positive_suffix, null_text_ratio
        self.join_empty_caption = join_empty_caption
        self.null_text_per_sample = null_text_per_sample
        self.vae_sample, self.timestep = vae_sample, timestep
        self._cache: dict[str, torch.Tensor] = {}
        self.negative_prompt = negative_prompt

    @property
    def device(self) -> torch.device:
        return self.base.unet.device

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings, cached per distinct prompt (the empty and negative prompts recur every step)."""
        missing = sorted({p for p in prompts if p not in self._cache})
        if missing:
            enc = self.base.text_encoder
            embeddings = encode_prompts(self.base.tokenizer, enc, missing)
            for prompt, emb in zip(missing, embeddings):
                self._cache[prompt] = emb
        return torch.stack([self._cache[p] for p in prompts]).to(self.device)

    def positive_prompt(self, caption: str) -> str:
        """The official ``f"{caption}, {suffix}"``; without a caption just the suffix (empty by default), unless
        ``join_empty_caption`` (the official code joins even an empty caption: ``", "``)."""
        if caption or self.join_empty_caption:
            return f"{caption}, {self.positive_suffix}"
        return self.positive_suffix

    def generator_prompts(self, prompts: list[str], generator: torch.Generator) -> list[str]:
        draws = len(prompts) if self.null_text_per_sample else 1
        drop = (torch.rand(draws, generator=generator) < self.null_text_ratio).tolist()
        drop = drop if self.null_text_per_sample else drop * len(prompts)
        return ["" if d else p for p, d in zip(prompts, drop)]

    def encode(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        vae = self.base.vae
        with torch.no_grad():
            dist = vae.encode(x.to(vae.dtype)).latent_dist
            if self.vae_sample:
                noise = torch.randn(dist.mean.shape, generator=generator).to(
                    dist.mean.device, dist.mean.dtype
                )
                z = dist.mean + dist.std * noise
            else:
                z = dist.mode()
        return z * vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1] (clamped), as the prediction is decoded."""
        vae = self.base.vae
        image = vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample
        return image.float().clamp(-1, 1)

    def losses(
        self,
        stage: str,
        lq: torch.Tensor,
        gt: torch.Tensor,
        prompts: list[str],
        generator: torch.Generator,
        before_objective: Callable[[ObjectiveContext], dict] | None = None,
    ) -> dict:
        """lq (model input, upsampled) and gt in [-1, 1], [B, 3, H, W]. Returns the total loss and its parts; in
        stage sem also ``context``, the objective's ``ObjectiveContext`` (for its step after the generator's).
        ``before_objective(context)`` runs between the generator's forward and the objective's term (ADD's
        discriminator step); the parts it returns are added to the output."""
        vae, unet = self.base.vae, self.base.unet
        z_lr = self.encode(lq, generator)
        prompts = [self.positive_prompt(p) for p in prompts]
        cond = self.embed(self.generator_prompts(prompts, generator))
        t = torch.full((z_lr.shape[0],), self.timestep, device=z_lr.device, dtype=torch.long)
        eps = unet(z_lr.to(unet.dtype), t, encoder_hidden_states=cond.to(unet.dtype)).sample
        z_hr = z_lr - eps.float()
        pred = vae.decode((z_hr / vae.config.scaling_factor).to(vae.dtype)).sample.float().clamp(-1, 1)
        out = {"l2": F.mse_loss(pred, gt.float())}
        total = self.weights.l2 * out["l2"]
        if stage == "sem":
            out["lpips"] = self.lpips(pred, gt.float()).mean()
            positive = self.embed(prompts)
            negative = self.embed([self.negative_prompt] * len(prompts))
            ctx = ObjectiveContext(z_hr, pred, gt.float(), lq, positive, negative, generator, self.decode)
            if before_objective is not None:
                out.update(before_objective(ctx))
            weighted, parts = self.objective.generator_loss(ctx)
            out.update(parts)
            total = total + self.weights.lpips * out["lpips"] + weighted
            out["context"] = ctx
        out["loss"] = total
        out["pred"] = pred.detach()
        return out
