"""Automatic regions: detectors that find faces or text in an image, and ``protect``, which gives what they find
its own lambda pair on top of any spec (``maps``)."""

from __future__ import annotations

import warnings

import torch

from pisasr.config import PROTECT_PAIRS, protect_kinds
from pisasr.errors import ConfigError, ImageError
from pisasr.regions.maps import Plane, RegionMap, Spec, as_pair, to_plane

DEFAULT_PROTECT_PAIR = (1.0, 0.5)  # a callable detector's pair unless one is given


class DetectionSkipped(ImageError):
    """A detector did not search this image (too small, too large, rejected): it stays unprotected."""


class ProtectWarning(UserWarning):
    """``protect`` went on without a kind whose detector skipped the image."""


def detector(what) -> object:
    """``"faces"`` -> ``pisasr.regions.faces.face_mask``, ``"text"`` -> ``pisasr.regions.text.text_mask``; a
    callable (image -> mask) is used as it is."""
    if callable(what):
        return what
    if what == "faces":
        from pisasr.regions.faces import face_mask

        return face_mask
    if what == "text":
        from pisasr.regions.text import text_mask

        return text_mask
    raise ConfigError(
        f"protect={what!r}: use 'faces', 'text' (or a list of them) or a callable returning a mask"
    )


def _kinds(what) -> list:
    """``what`` as a list of kinds: names ("faces", "text", "faces,text"), callables, or a list of them."""
    if callable(what):
        return [what]
    if isinstance(what, str) or what is None:
        return list(protect_kinds(what))
    out = []
    for item in what:
        out += [item] if callable(item) else [k for k in protect_kinds(item) if k not in out]
    return out


def kind_name(kind) -> str:
    return kind if isinstance(kind, str) else getattr(kind, "__name__", "detector")


def detect(kind, image, size: tuple[int, int] | None = None) -> Plane:
    """The mask one kind's detector finds in ``image``; text is rasterised at ``size`` (H, W) when given (the
    output's), the other kinds come at their own size. ``DetectionSkipped`` passes through."""
    if kind == "text":
        return to_plane(detector(kind)(image, size=size), "protect mask (text)")
    return to_plane(detector(kind)(image), f"protect mask ({kind_name(kind)})")


def detect_masks(what, image, size=None, warn=None) -> dict:
    """kind -> mask for each kind of ``what``; ``image`` is one image or a dict kind -> image. A kind whose
    detector skips the image gets an empty mask and ``warn(message)`` (default: a ``ProtectWarning``)."""
    masks = {}
    for kind in _kinds(what):
        source = image[kind] if isinstance(image, dict) else image
        try:
            masks[kind] = detect(kind, source, size)
        except DetectionSkipped as exc:
            message = f"{exc}: restored without protect={kind_name(kind)}"
            if warn is None:
                warnings.warn(message, ProtectWarning, stacklevel=3)
            else:
                warn(message)
            masks[kind] = torch.zeros(1, 1, dtype=torch.float64)
    return masks


def protect_pair(kind, pair=None) -> Spec:
    """``pair`` when given (for every kind), else the kind's default (``pisasr.config.PROTECT_PAIRS``)."""
    if pair is not None:
        return as_pair(pair)
    return as_pair(
        PROTECT_PAIRS.get(kind, DEFAULT_PROTECT_PAIR) if isinstance(kind, str) else DEFAULT_PROTECT_PAIR
    )


def protect(
    spec,
    image,
    what="faces",
    pair=None,
    feather: float = 0.0,
    size=None,
    masks: dict | None = None,
    warn=None,
) -> Spec:
    """``spec`` with the regions that ``what`` finds in ``image`` (any size of the output's aspect ratio, e.g.
    the input) given their pair; unchanged (the scalar path) where nothing is found.

    ``what``: "faces", "text", "faces,text", a list of those, or a callable (image -> mask). ``pair``: one pair
    for every kind; None gives each kind its default (faces (1.0, 0.5), text (1.0, 0.0); a callable (1.0,
    0.5)). ``size`` (H, W): where text is rasterised, e.g. the output's (default the image's). Where kinds
    overlap, the one listed last wins. ``masks`` (kind -> mask) skips detection for the kinds it holds (the
    CLI detects once to save the masks too); ``warn`` receives the message when a detector skips the image."""
    spec = as_pair(spec)
    kinds = _kinds(what)
    found = dict(masks or {})
    missing = [kind for kind in kinds if kind not in found]
    if missing:
        found.update(detect_masks(missing, image, size, warn))
    for kind in kinds:
        mask = to_plane(found[kind], f"protect mask ({kind_name(kind)})")
        if bool((mask > 0).any()):
            spec = RegionMap(mask, protect_pair(kind, pair), spec, feather, name=f"protect={kind_name(kind)}")
    return spec
