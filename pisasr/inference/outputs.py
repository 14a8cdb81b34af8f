"""Where results go and how: output names (``--suffix``, ``--ext``), the never-overwrite-an-input rule, what
counts as an already written output (``--skip_existing``), lossless fallbacks, and the ``run.json`` record."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from pisasr.errors import PiSAError
from pisasr.inference.sweep import sweep_name
from pisasr.io.files import atomic_write, atomic_write_text
from pisasr.io.images import save_image, to_pil

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


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def refuse_overwriting_inputs(inputs: list[Path], targets: list[list[Path]], suffix: str = "") -> None:
    """A result must never replace an input (``-i DIR -o DIR`` would otherwise upscale the user's photos away),
    under its own name or as the PNG written instead of a JPEG/WebP that cannot hold the image.

    Files are compared by device and inode, so another spelling of the same file (a symlink, a hard link, another
    case on a case-insensitive disk) is caught too; a target that does not exist yet replaces nothing.
    """
    sources = {fid: path for path in inputs if (fid := _file_id(path)) is not None}
    way_out = "a different --suffix" if suffix else "--suffix (e.g. --suffix _x4)"
    for paths in targets:
        for target in paths:
            for candidate in [target] + ([fallback_png(target)] if target.suffix != ".png" else []):
                source = sources.get(_file_id(candidate))
                if source is not None:
                    raise PiSAError(
                        f"output {candidate} would overwrite the input {source}: write elsewhere with -o, or name "
                        f"the outputs apart with {way_out}"
                    )


def unique_inputs(inputs: list[Path], naming: OutputNaming) -> list[Path]:
    """Inputs once each (a list may name a file twice); two inputs must not share an output name (compared
    case-insensitively: ``A.png`` and ``a.jpg`` would overwrite each other on macOS and Windows)."""
    seen_files: set = set()
    unique = []
    for path in inputs:
        key = _file_id(path) or path.resolve()
        if key not in seen_files:
            seen_files.add(key)
            unique.append(path)
    stems: dict[str, Path] = {}
    for path in unique:
        key = path.stem.casefold()
        if key in stems:
            name = f"{path.stem}{naming.suffix}.{naming.ext}"
            raise PiSAError(f"inputs {stems[key]} and {path} would both be written as {name}; rename one")
        stems[key] = path
    return unique


def without_earlier_outputs(inputs: list[Path], out_dir: Path) -> tuple[list[Path], int]:
    """Drop from the inputs the files that earlier runs wrote into their folder (per that folder's ``run.json``),
    so that ``-i DIR -o DIR --suffix _x4`` run twice, or ``-i DIR -o OTHER`` after it, does not upscale earlier
    results. Returns (inputs, dropped)."""
    folders = {p.resolve().parent for p in inputs} | {out_dir.resolve()}
    earlier = {folder: RunRecord.written_before(folder) for folder in folders}
    kept = [p for p in inputs if p.name not in earlier[p.resolve().parent]]
    return kept, len(inputs) - len(kept)


def fallback_png(path: Path) -> Path:
    return path.with_suffix(".png")


def is_complete(path: Path) -> bool:
    """A written output: a non-empty file that decodes in full (a 0-byte or cut file is redone)."""
    try:
        if path.stat().st_size == 0:
            return False
        with Image.open(path) as img:
            img.load()  # verify() checks nothing for JPEG and WebP; a full decode does
        return True
    except Exception:  # missing, unreadable, truncated, not an image
        return False


def _needs_png(path: Path, ext: str) -> bool:
    """Whether the PNG at ``path`` holds what ``ext`` could not (so it is that target's fallback)."""
    try:
        with Image.open(path) as img:
            deep = img.mode.startswith("I") or "16" in str(img.tile[0].args if img.tile else "")
            alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    except Exception:
        return False
    return deep or (alpha and ext == "jpg")


def already_written(target: Path) -> bool:
    """``target`` is complete, or it is a JPEG/WebP whose image needed the PNG written instead, and that is."""
    if is_complete(target):
        return True
    ext = target.suffix.lstrip(".").lower()
    png = fallback_png(target)
    return ext != "png" and is_complete(png) and _needs_png(png, ext)


def write_output(image: torch.Tensor, target: Path, bit_depth: int, quality: int = 95) -> Path:
    """Write [C,H,W] in [0,1] at ``target`` in its format; returns the path written.

    A lossy or 8-bit format never silently drops what the input had: an image with alpha (JPEG) or 16 bits per
    channel (JPEG, WebP) is written as PNG beside the requested name instead.
    """
    ext = target.suffix.lstrip(".").lower()
    if ext == "png":
        return save_image(image, target, bit_depth)
    has_alpha = image.shape[0] in (2, 4)
    if bit_depth == 16 or (has_alpha and ext == "jpg"):
        return save_image(image, fallback_png(target), bit_depth)
    save = partial(to_pil(image).save, format=_PIL_FORMATS[ext], quality=quality)
    return atomic_write(target, save)


def save_sheet(sheet: Image.Image, target: Path) -> Path:
    return atomic_write(target, partial(sheet.save, format="PNG"))


class RunRecord:
    """``run.json`` holds one entry per run into the folder, each with the images *that* run wrote.

    The entry is written when the run starts (``"status": "running"``) and completed when it ends, also when it
    is interrupted, so images on disk always have an entry that says how they were made; a later run
    (``--skip_existing``, other settings) adds its own entry instead of rewriting the record. A record from
    before this format becomes the first entry; an unreadable one is kept aside, never dropped.
    """

    def __init__(self, out_dir: Path, entry: dict):
        self.path = out_dir / RECORD_NAME
        self.entry = {**entry, "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.runs = self._read()
        self.runs.append(self.entry)
        self._write()

    def _read(self) -> list:
        if not self.path.is_file():
            return []
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            aside = self.path.with_name(f"{RECORD_NAME}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(self.path, aside)
            return []
        return old["runs"] if isinstance(old, dict) and isinstance(old.get("runs"), list) else [old]

    def _write(self) -> None:
        try:
            atomic_write_text(self.path, json.dumps({"runs": self.runs}, indent=2, default=str))
        except OSError as exc:
            raise PiSAError(f"run record {self.path} could not be written ({exc.strerror or exc})") from None

    def finish(self, status: str, **results) -> None:
        self.entry.update(status=status, **results)
        self._write()

    @staticmethod
    def written_before(out_dir: Path) -> set[str]:
        """Names of the outputs every earlier run into ``out_dir`` recorded."""
        try:
            runs = json.loads((out_dir / RECORD_NAME).read_text()).get("runs", [])
            return {name for run in runs for name in run.get("written", [])}
        except (OSError, ValueError, AttributeError):
            return set()
