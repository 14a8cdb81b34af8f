"""Building the configured semantic objective (``train.sem_objective``) and the loop's extras from a config.

csd: ``CSDLoss`` on the frozen teacher ``train.csd.teacher`` (unchanged). vsd: the same teacher carrying the fake
score's LoRA. add: the same teacher, the DINO discriminator heads and the DINOv2 condition. ``train.vsd.teacher`` /
``train.add.teacher`` (null: ``train.csd.teacher``) and ``dtype`` (null: ``train.csd.dtype``) pick another.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from pisasr.losses.objectives import SemanticObjective
from pisasr.training.aux import AuxTrainer, TrainingExtras, broadcast_parameters
from pisasr.training.ema import AdapterEMA

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_teacher(path: str, dtype: str, accelerator, tiny_if_missing: bool, base_path: str):
    """The frozen SD teacher UNet and its DDPM scheduler, on the accelerator's device."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from pisasr.model.base import _load_failure, ensure_tiny_base

    with accelerator.main_process_first():
        if tiny_if_missing and path == base_path:
            ensure_tiny_base(path)
        try:
            teacher = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=DTYPES[dtype])
            scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        except (OSError, ValueError) as exc:
            raise _load_failure(path, exc) from None
    teacher.requires_grad_(False).eval().to(accelerator.device)
    return teacher, scheduler


def build_objective(cfg: DictConfig, accelerator) -> tuple[SemanticObjective, object]:
    """``(objective, csd)``: ``csd`` is the ``CSDLoss`` of the csd objective (else None)."""
    from pisasr.losses import CSDLoss
    from pisasr.losses.objectives import CSDObjective

    t, m = cfg.train, cfg.model
    name = t.sem_objective
    section = t[name]
    teacher, scheduler = load_teacher(
        section.teacher or t.csd.teacher,
        section.dtype or t.csd.dtype,
        accelerator,
        m.tiny_base_if_missing,
        m.base,
    )
    if name == "csd":
        csd = CSDLoss(teacher, scheduler, t.csd.guidance_scale, t.csd.t_min_ratio, t.csd.t_max_ratio)
        return CSDObjective(csd, t.lambda_csd), csd
    if name == "vsd":
        from pisasr.losses.vsd import VSDObjective

        v = t.vsd
        objective = VSDObjective(
            teacher, scheduler, t.lambda_vsd, v.guidance_scale, v.t_min, v.t_max, v.fake_weight,
            v.fake_rank, v.fake_alpha, seed=t.seed,
        )  # fmt: skip
        return objective, None
    return _build_add(cfg, accelerator, teacher, scheduler), None


def _build_add(cfg: DictConfig, accelerator, teacher, scheduler):
    from pisasr.losses.add import ADDObjective
    from pisasr.losses.discriminator import (
        DinoFeatures,
        Dinov2Condition,
        ProjectedDiscriminator,
        load_vit,
    )

    a = cfg.train.add
    with accelerator.main_process_first():
        if cfg.model.tiny_base_if_missing:
            from pisasr.model.tiny_vit import ensure_tiny_vits

            ensure_tiny_vits(a.dino, a.dinov2)
        dino, dinov2 = load_vit(a.dino, "dino"), load_vit(a.dinov2, "dinov2")
    condition = Dinov2Condition(dinov2)
    with torch.random.fork_rng(devices=[]):  # the same heads on every rank, the global RNG untouched
        torch.manual_seed(cfg.train.seed)
        discriminator = ProjectedDiscriminator(DinoFeatures(dino), condition.dim, a.crop_prob)
    discriminator.to(accelerator.device)
    condition.to(accelerator.device)
    objective = ADDObjective(
        teacher, scheduler, discriminator, condition, cfg.train.lambda_add, a.adversarial_weight,
        a.distillation_weight, a.teacher_draws, a.student_step,
    )  # fmt: skip
    return objective


def build_extras(cfg: DictConfig, accelerator, objective: SemanticObjective | None, dual) -> TrainingExtras:
    """The objective's auxiliary trainer (when it has a network) and the adapters' EMA (``train.ema_decay``);
    registered for Accelerate's checkpoints when either exists."""
    t = cfg.train
    aux = None
    if objective is not None and objective.aux_phase is not None:
        params = objective.aux_parameters()
        broadcast_parameters(params, accelerator)
        section = t[objective.name]
        betas = (section.adam_beta1, section.adam_beta2) if "adam_beta1" in section else (0.9, 0.999)
        optimizer = torch.optim.AdamW(
            params,
            lr=section.learning_rate,
            betas=betas,
            weight_decay=section.weight_decay,
            eps=t.adam_epsilon,
        )
        aux = AuxTrainer(objective, accelerator, optimizer, section.max_grad_norm)
    ema = AdapterEMA(dual, t.ema_decay) if t.ema_decay is not None else None
    extras = TrainingExtras(objective, aux, ema)
    if extras.has_state:
        accelerator.register_for_checkpointing(extras)
    return extras
