"""Typed configuration: dataclass schemas, YAML files and ``key=value`` overrides through OmegaConf.

A run's configuration is ``schema defaults <- YAML file <- command-line overrides``. The schema is strict: an
unknown key or a value of the wrong type is a ``ConfigError`` naming the key, and ``validate`` checks the values
that a type cannot (choices, ranges). ``schema`` holds the sections and their defaults, ``checks`` the checks.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pisasr.config.checks import check_lambda, protect_kinds, validate
from pisasr.config.schema import (
    NEGATIVE_PROMPT,
    PREEMPT_SIGNALS,
    PROTECT_KINDS,
    PROTECT_PAIRS,
    SD21_BASE,
    SD_TURBO,
    ADDConfig,
    CSDConfig,
    DataConfig,
    DegradationRef,
    EvalConfig,
    InferenceConfig,
    ModelConfig,
    PiSAConfig,
    TaggerConfig,
    TrainConfig,
    VSDConfig,
)
from pisasr.errors import ConfigError
from pisasr.io.paths import shipped  # also registers ${pisasr_cache:NAME} (the user cache folder) for configs

__all__ = [
    "NEGATIVE_PROMPT", "PREEMPT_SIGNALS", "PROTECT_KINDS", "PROTECT_PAIRS", "SD21_BASE", "SD_TURBO",
    "ADDConfig", "CSDConfig", "DataConfig", "DegradationRef", "EvalConfig", "InferenceConfig", "ModelConfig",
    "PiSAConfig", "TaggerConfig", "TrainConfig", "VSDConfig",
    "check_lambda", "load_config", "protect_kinds", "to_yaml", "validate",
]  # fmt: skip


def _one_line(exc: OmegaConfBaseException) -> str:
    return str(exc).strip().splitlines()[0]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Schema defaults, then the YAML file at ``path``, then ``key=value`` overrides; validated."""
    cfg = OmegaConf.structured(PiSAConfig)
    layers = []
    if path is not None:
        path = shipped(path)  # configs/<name>.yaml of the checkout, from any folder
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            layers.append(OmegaConf.load(path))
        except Exception as exc:  # yaml errors carry several lines
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    _check_renamed(layers, path, overrides)
    for layer, origin in zip(
        layers, ([str(path)] if path is not None else []) + ["command line"] * len(overrides)
    ):
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or "?"
            raise ConfigError(f"{origin}: bad config key '{key}': {_one_line(exc)}") from None
    validate(cfg)
    return cfg


# Keys that changed name or meaning: a config that still uses one gets this message instead of "unknown key".
RENAMED = {
    "data.hq_prob": "data.hq_sample_prob (the chance of drawing from hq_lists; the official --prob is 1 minus it)",
}


def _check_renamed(layers: list, path, overrides) -> None:
    origins = ([str(path)] if path is not None else []) + ["command line"] * bool(overrides)
    for layer, origin in zip(layers, origins):
        for key, replacement in RENAMED.items():
            if OmegaConf.select(layer, key, default=None) is not None:
                raise ConfigError(f"{origin}: '{key}' was renamed: use {replacement}")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
