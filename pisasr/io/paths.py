"""Where pisasr finds what it ships and where it caches what it makes, whatever the current folder.

``shipped("configs/degradation/realesrgan.yaml")`` is that path when it exists from the current folder (a user's
own copy), else the file pisasr ships: degradation configs are package data (``pisasr/resources/degradation``,
which ``configs/degradation`` links to in the source tree), the other ``configs/*.yaml`` come from the source
checkout pisasr runs from, and configs name files in that checkout as ``${pisasr_source:NAME}`` (the smoke config's
example images). ``user_cache_dir()`` is ``$XDG_CACHE_HOME/pisasr`` (``~/.cache/pisasr``); configs name
files in it as ``${pisasr_cache:NAME}`` (the smoke config's tiny base).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # pisasr/
RESOURCES = PACKAGE_ROOT / "resources"
SOURCE_ROOT = PACKAGE_ROOT.parent  # the checkout of an editable install (holds configs/)


def shipped(path: str | os.PathLike) -> Path:
    """``path`` if it exists (or is absolute); else the shipped file a relative ``configs/...`` path names; else
    ``path`` unchanged, so that the caller's "not found" error names what the user wrote."""
    p = Path(path)
    if p.exists() or p.is_absolute() or p.parts[:1] != ("configs",):
        return p
    if p.parts[:2] == ("configs", "degradation"):
        candidate = RESOURCES.joinpath("degradation", *p.parts[2:])
    else:
        candidate = SOURCE_ROOT / p
    return candidate if candidate.exists() else p


def source_path(name: str) -> str:
    """``name`` in the source checkout pisasr runs from (the smoke config's ``${pisasr_source:examples}``), so that
    a config naming it works from any folder; ``name`` unchanged where the checkout has no such file."""
    candidate = SOURCE_ROOT / name
    return str(candidate) if candidate.exists() else name


def user_cache_dir() -> Path:
    """pisasr's cache folder: ``$XDG_CACHE_HOME/pisasr``, or ``~/.cache/pisasr`` (created by whoever writes)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "pisasr"


def _cache_path(name: str) -> str:
    return str(user_cache_dir() / name)


if not OmegaConf.has_resolver("pisasr_cache"):
    # ${pisasr_cache:tiny-sd-base} -> ~/.cache/pisasr/tiny-sd-base; resolved when read, so XDG_CACHE_HOME counts.
    # OmegaConf 2.4 renamed register_new_resolver (2.3) to register_resolver.
    register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    register("pisasr_cache", _cache_path)
if not OmegaConf.has_resolver("pisasr_source"):
    register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    register("pisasr_source", source_path)
