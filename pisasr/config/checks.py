"""Checks of the values a type cannot express (choices, ranges, pairs); each failure is one ``ConfigError`` line
naming the key."""

from __future__ import annotations

import math
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from pisasr.config.schema import PREEMPT_SIGNALS, PROTECT_KINDS
from pisasr.errors import ConfigError


def protect_kinds(value) -> tuple[str, ...]:
    """``None`` -> (); ``"faces"``, ``"faces,text"`` or ``["faces", "text"]`` -> the kinds in order, once each;
    a ``ConfigError`` for anything else."""
    if value is None:
        return ()
    items = (
        value.split(",")
        if isinstance(value, str)
        else list(value)
        if isinstance(value, Sequence)
        else [value]
    )
    kinds = []
    for item in items:
        kind = item.strip() if isinstance(item, str) else item
        if kind not in PROTECT_KINDS:
            raise ConfigError(
                f"config value inference.protect={kind!r} is not one of {', '.join(PROTECT_KINDS)} "
                "(both: faces,text)"
            )
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        raise ConfigError(f"inference.protect={value!r}: name faces, text or faces,text")
    return tuple(kinds)


def check_lambda(value: float, name: str) -> float:
    """A lambda must be a finite number: nan or inf would write black images that count as restored."""
    if not math.isfinite(value):
        raise ConfigError(f"{name}: {value} is not a finite number (lambdas are finite, e.g. 0.5 or 1.5)")
    return value


_CHOICES = {
    "inference.color_fix": ("adain", "wavelet", "none"),
    "inference.dtype": ("fp32", "fp16", "bf16"),
    "inference.resample": ("pil", "torch"),
    "inference.ext": ("png", "jpg", "webp"),
    "inference.compile_dynamic": ("auto", "true", "false"),
    "inference.pix_unet": ("auto", "subtract", "copy"),
    "inference.compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "train.stage": ("pix", "sem", "both"),
    "train.mixed_precision": ("no", "fp16", "bf16"),
    "train.csd.dtype": ("fp32", "fp16", "bf16"),
    "train.sem_objective": ("csd", "vsd", "add"),
    "train.vsd.dtype": (None, "fp32", "fp16", "bf16"),
    "train.add.dtype": (None, "fp32", "fp16", "bf16"),
    "data.small_images": ("skip", "upscale"),
    "data.lq_upsample": ("random", "bicubic"),
}


def validate(cfg: DictConfig) -> None:
    for key, choices in _CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in choices:
            raise ConfigError(f"config value {key}={value!r} is not one of {', '.join(choices)}")
    inf = cfg.inference
    if inf.upscale < 1:
        raise ConfigError(f"inference.upscale={inf.upscale} must be >= 1")
    if inf.latent_tile < 16 or inf.latent_tile % 8:
        raise ConfigError(f"inference.latent_tile={inf.latent_tile} must be a multiple of 8 and >= 16")
    if not 0 <= inf.latent_tile_overlap < inf.latent_tile:
        raise ConfigError(
            f"inference.latent_tile_overlap={inf.latent_tile_overlap} must be >= 0 and smaller than "
            f"inference.latent_tile={inf.latent_tile}"
        )
    if inf.vae_tile < 64 or inf.vae_tile % 64:
        raise ConfigError(f"inference.vae_tile={inf.vae_tile} must be a multiple of 64 and >= 64")
    for name in ("tile_batch", "batch_size"):
        if inf[name] < 1:
            raise ConfigError(f"inference.{name}={inf[name]} must be >= 1")
    if inf.io_workers < 0:
        raise ConfigError(f"inference.io_workers={inf.io_workers} must be >= 0")
    for name in ("lambda_pix", "lambda_sem"):
        if not math.isfinite(inf[name]):
            raise ConfigError(f"inference.{name}={inf[name]} is not a finite number")
    if not 1 <= inf.quality <= 100:
        raise ConfigError(f"inference.quality={inf.quality} must be between 1 and 100")
    if "/" in inf.suffix or "\\" in inf.suffix:
        raise ConfigError(f"inference.suffix={inf.suffix!r} must be a name part, without path separators")
    data = cfg.data
    if data.crop_size < 8 or data.crop_size % 8:
        raise ConfigError(
            f"data.crop_size={data.crop_size} must be a positive multiple of 8 (the VAE works on 8x8 blocks)"
        )
    if not 0 <= data.hq_sample_prob <= 1:
        raise ConfigError(f"data.hq_sample_prob={data.hq_sample_prob} must be in [0, 1]")
    _validate_regions(inf)
    tagger = data.tagger
    if tagger.enabled and cfg.data.prompts:
        raise ConfigError(
            "data.prompts and data.tagger.enabled are both set: the tagger makes the prompts; pick one"
        )
    if tagger.top_k < 1:
        raise ConfigError(f"data.tagger.top_k={tagger.top_k} must be >= 1")
    _validate_preemption(cfg.train)
    _validate_objectives(cfg.train)
    m = cfg.model
    for name in ("rank_pix", "rank_sem"):
        if getattr(m, name) < 1:
            raise ConfigError(f"model.{name}={getattr(m, name)} must be >= 1")


def _validate_objectives(t: DictConfig) -> None:
    if t.ema_decay is not None and not 0 <= t.ema_decay < 1:
        raise ConfigError(f"train.ema_decay={t.ema_decay} must be in [0, 1) (or null: off)")
    if not 0 <= t.vsd.t_min < t.vsd.t_max <= 1000:
        raise ConfigError(
            f"train.vsd.t_min={t.vsd.t_min}, t_max={t.vsd.t_max}: need 0 <= t_min < t_max <= 1000"
        )
    if t.vsd.fake_rank < 1 or t.add.teacher_draws < 1 or not 1 <= t.add.student_step <= 4:
        raise ConfigError(
            "train.vsd.fake_rank and train.add.teacher_draws must be >= 1, train.add.student_step in 1..4"
        )
    if not 0 <= t.add.crop_prob <= 1:
        raise ConfigError(f"train.add.crop_prob={t.add.crop_prob} must be in [0, 1]")


def _validate_preemption(t: DictConfig) -> None:
    for name in t.preempt_signals:
        if name not in PREEMPT_SIGNALS:
            raise ConfigError(f"train.preempt_signals: {name!r} is not one of {', '.join(PREEMPT_SIGNALS)}")


def _validate_regions(inf: DictConfig) -> None:
    for name in ("lambda_inside", "lambda_outside", "protect_pair"):
        if inf[name] is not None and (len(inf[name]) != 2 or not all(math.isfinite(v) for v in inf[name])):
            raise ConfigError(
                f"inference.{name}={list(inf[name])} must be a pair of finite numbers [lambda_pix, lambda_sem]"
            )
    protect_kinds(inf.protect)
    if inf.mask and inf.lambda_inside is None:
        raise ConfigError("inference.mask needs inference.lambda_inside: pass --lambda_inside P,S")
    if inf.feather < 0:
        raise ConfigError(f"inference.feather={inf.feather} must be >= 0")
    if inf.sweep and (inf.mask or inf.protect):
        raise ConfigError("--sweep cannot be combined with --mask or --protect (sweep the pairs in the API)")
