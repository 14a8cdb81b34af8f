"""Where results go and how: output names (``--suffix``, ``--ext``), the never-overwrite-an-input rule, what
counts as an already written output (``--skip_existing``), lossless fallbacks, and the ``run.json`` record."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from pisasr.errors import PiSAError
from pisasr.fileio import atomic_write, atomic_write_text
from pisasr.image_io import save_image, to_pil
from pisasr.sweep import sweep_name

EXTENSIONS = ("png", "jpg", "webp")
_PIL_FORMATS = {"jpg": "JPEG", "webp": "WEBP"}
RECORD_NAME = "run.json"


@dataclass(frozen=True)
class OutputNaming:
    """``<stem><suffix>.<ext>`` (a sweep: ``<stem><suffix>_pixP_semS.<ext>`` per pair, plus a PNG sheet)."""

    suffix: str = ""
    ext: str = "png"

    def targets(self, stem: str, out_dir: Path, pairs: list[tuple[float, float]], sweep: bool) -> list[Path]:
        name = f"{stem}{self.suffix}"
        if not sweep:
            return [out_dir / f"{name}.{self.ext}"]
        return [out_dir / sweep_name(name, p, s, self.ext) for p, s in pairs] + [
            out_dir / f"{name}_sweep.png"
        ]


def refuse_overwriting_inputs(inputs: list[Path], targets: list[list[Path]]) -> None:
    """A result must never replace an input (``-i DIR -o DIR`` would otherwise upscale the user's photos away)."""
    sources = {path.resolve(): path for path in inputs}
    for paths in targets:
        for target in paths:
            source = sources.get(target.resolve())
            if source is not None:
                raise PiSAError(
                    f"output {target} would overwrite the input {source}: write elsewhere with -o, or name the "
                    "outputs apart with --suffix (e.g. --suffix _x4) or --ext"
                )


def fallback_png(path: Path) -> Path:
    return path.with_suffix(".png")


def is_complete(path: Path) -> bool:
    """A written output: a non-empty file that decodes as an image (a 0-byte or cut file is redone)."""
    try:
        if path.stat().st_size == 0:
            return False
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # missing, unreadable, truncated, not an image
        return False


def already_written(target: Path) -> bool:
    return is_complete(target) or (target.suffix != ".png" and is_complete(fallback_png(target)))


def write_output(image: torch.Tensor, target: Path, bit_depth: int, quality: int = 95) -> Path:
    """Write [C,H,W] in [0,1] at ``target`` in its format; returns the path written.

    A lossy or 8-bit format never silently drops what the input had: an image with alpha (JPEG) or 16 bits per
    channel (JPEG, WebP) is written as PNG beside the requested name instead.
    """
    ext = target.suffix.lstrip(".").lower()
    if ext == "png":
        return save_image(image, target, bit_depth)
    keeps_alpha = ext == "webp"
    has_alpha = image.shape[0] in (2, 4)
    if bit_depth == 16 or (has_alpha and not keeps_alpha):
        return save_image(image, fallback_png(target), bit_depth)
    save = partial(to_pil(image).save, format=_PIL_FORMATS[ext], quality=quality)
    return atomic_write(target, save)


def save_sheet(sheet: Image.Image, target: Path) -> Path:
    return atomic_write(target, partial(sheet.save, format="PNG"))


def append_run_record(out_dir: Path, entry: dict) -> Path:
    """``run.json`` holds one entry per run into the folder, each with the images *it* wrote.

    A later run (``--skip_existing``, other settings) adds an entry instead of rewriting the record, so the file
    keeps saying how every image there was made. A record from before this format becomes the first entry.
    """
    path = out_dir / RECORD_NAME
    runs: list = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            runs = old["runs"] if isinstance(old, dict) and isinstance(old.get("runs"), list) else [old]
        except (OSError, ValueError):
            os.replace(path, path.with_name(f"{RECORD_NAME}.unreadable"))  # kept, never silently dropped
    runs.append(entry)
    return atomic_write_text(path, json.dumps({"runs": runs}, indent=2, default=str))
