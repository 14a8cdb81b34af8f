"""Regions for the CLI: mask files (one for all inputs, or a folder with one per input stem), protected faces and
text, the per-image ``RegionMap``, and what ``--save_masks`` writes: the latent-resolution lambda maps and each
protected kind's mask at the output size."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from pisasr.config import protect_kinds
from pisasr.errors import ImageError, plural
from pisasr.io.files import atomic_write
from pisasr.io.images import IMAGE_SUFFIXES
from pisasr.regions.detection import detect_masks, protect, protect_pair
from pisasr.regions.maps import LatentGrid, RegionMap, check_aspect, latent_pair, read_mask


def _mask_files(mask: Path) -> dict[str, Path]:
    files = sorted(f for f in mask.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    by_stem: dict[str, Path] = {}
    for f in files:
        by_stem.setdefault(f.stem, f)
    return by_stem


@dataclass
class RegionPlan:
    """How each input's pair is built: its mask (if any) inside ``inside``, then each protected kind (faces,
    text) inside ``protect_pair`` or, without it, the kind's own default pair."""

    mask: Path | None
    inside: tuple[float, float] | None
    outside: tuple[float, float]
    feather: float
    protect: tuple[str, ...]
    protect_pair: tuple[float, float] | None
    save_dir: Path | None  # where --save_masks writes the latent maps
    cell: int = 8
    by_stem: dict[str, Path] | None = None  # a mask folder's files, listed once
    saved: list[str] = field(default_factory=list)  # map files written so far
    _noted: set = field(default_factory=set)  # notes said once per run
    _lock: threading.Lock = field(default_factory=threading.Lock)  # images are prepared in reader threads

    @classmethod
    def from_options(cls, o, out_dir: Path) -> RegionPlan | None:
        if not (o.mask or o.protect):
            return None
        mask = Path(o.mask) if o.mask else None
        if mask is not None and not mask.exists():
            raise ImageError(f"{mask}: mask file or folder not found")
        outside = o.lambda_outside if o.lambda_outside is not None else (o.lambda_pix, o.lambda_sem)
        kinds = protect_kinds(o.protect)
        if "text" in kinds:  # a missing extra is one line before any model is loaded
            from pisasr.regions.text import require

            require()
        pair = o.protect_pair
        return cls(
            mask=mask,
            inside=tuple(map(float, o.lambda_inside)) if o.lambda_inside is not None else None,
            outside=(float(outside[0]), float(outside[1])),
            feather=float(o.feather),
            protect=kinds,
            protect_pair=(float(pair[0]), float(pair[1])) if pair is not None else None,
            save_dir=out_dir if o.save_masks else None,
            by_stem=_mask_files(mask) if mask is not None and mask.is_dir() else None,
        )

    def mask_for(self, image_path: Path) -> Path | None:
        if self.by_stem is None:
            return self.mask
        return self.by_stem.get(image_path.stem)

    def spec_for(self, prepared):
        """The pair spec of one prepared input; a bad or missing mask is an ``ImageError`` naming the file."""
        path = prepared.image.path or Path("image")
        spec = self.outside
        feather = self._feather_for(prepared.geometry.out_size)
        if self.mask is not None:
            mask_path = self.mask_for(path)
            if mask_path is None:
                raise ImageError(
                    f"{path}: no mask for it in {self.mask} (expected {path.stem} with an image suffix)"
                )
            plane = read_mask(mask_path)
            check_aspect(plane, prepared.geometry.out_size, f"{mask_path} (the mask of {path})")
            spec = RegionMap(plane, self.inside, spec, feather, name=str(mask_path))
        masks = {}
        if self.protect:
            masks = self._detect(path, prepared)
            spec = protect(spec, None, self.protect, self.protect_pair, feather, masks=masks)
        if self.save_dir is not None:
            self.save_maps(path.stem, spec, LatentGrid.of(prepared.geometry, self.cell))
            for kind, mask in masks.items():
                self.save_mask(path.stem, kind, mask, prepared.geometry.out_size)
        return spec

    def _note_once(self, key: str, text: str) -> None:
        from tqdm import tqdm  # a line above the progress bar, not through it

        with self._lock:
            if key in self._noted:
                return
            self._noted.add(key)
        tqdm.write(text, file=sys.stderr)

    def _feather_for(self, out_size: tuple[int, int]) -> float:
        """``feather``, capped at half the output's shorter side: a wider Gaussian sees mostly the padding and
        blurs the region away (and takes far longer); said once per run."""
        cap = min(out_size) / 2
        if self.feather <= cap:
            return self.feather
        self._note_once("feather", f"note: --feather {self.feather:g} is wider than an output can hold: "
                        f"capped at half its shorter side ({cap:g} px for {out_size[1]}x{out_size[0]})")  # fmt: skip
        return cap

    def _detect(self, path: Path, prepared) -> dict:
        """Each protected kind's mask: faces on the model-size image, with one line per image saying how many it
        found; text on the input itself, drawn at the output size. A detector that skips the image is a warning
        line and an empty mask (the scalar path)."""

        def warn(message: str) -> None:
            tqdm.write(f"warning: {path}: {message}", file=sys.stderr)

        others = [kind for kind in self.protect if kind != "faces"]
        out_size = tuple(prepared.geometry.out_size)
        masks = detect_masks(others, {"text": prepared.image.rgb}, out_size, warn) if others else {}
        if "faces" in self.protect:
            from pisasr.regions.faces import detect_faces, face_mask

            boxes = detect_faces(prepared.reference)
            found = plural(len(boxes), "face") if boxes else "no face"
            self._note_once(f"faces {path}", f"{path}: {found} found (--protect faces)")
            masks["faces"] = torch.from_numpy(face_mask(prepared.reference, boxes=boxes))
        return {kind: masks[kind] for kind in self.protect}

    def map_files(self, stem: str) -> list[Path]:
        """Where ``--save_masks`` writes an input's maps and protected kinds' masks (none without it)."""
        if self.save_dir is None:
            return []
        maps = [self.save_dir / f"{stem}_lambda_{name}.tiff" for name in ("pix", "sem")]
        return maps + [self.save_dir / f"{stem}_mask_{kind}.tiff" for kind in self.protect]

    def save_mask(self, stem: str, kind: str, mask: torch.Tensor, out_size) -> None:
        """``<stem>_mask_<kind>.tiff``: what the detector found, 8-bit at the output size (white = protected;
        all black when it found nothing or skipped the image)."""
        mask = mask.to(torch.float32)
        if tuple(mask.shape) != tuple(out_size):
            mask = F.interpolate(mask[None, None], size=tuple(out_size), mode="nearest")[0, 0]
        image = Image.fromarray((mask.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), "L")
        target = self.save_dir / f"{stem}_mask_{kind}.tiff"
        atomic_write(target, partial(image.save, format="TIFF"))
        self.saved.append(target.name)

    def save_maps(self, stem: str, spec, grid: LatentGrid) -> None:
        """``<stem>_lambda_pix.tiff`` / ``<stem>_lambda_sem.tiff``: the lambdas on the latent grid, float32."""
        for target, value in zip(self.map_files(stem), latent_pair(spec, grid)):
            array = np.broadcast_to(np.asarray(value, dtype=np.float32), grid.latent_size)
            image = Image.fromarray(np.ascontiguousarray(array), "F")
            atomic_write(target, partial(image.save, format="TIFF"))
            self.saved.append(target.name)  # for the run record (list.append is thread-safe)

    def record(self, inputs: list[Path]) -> dict:
        """What ``run.json`` records: the mask file of every input and the pairs."""
        masks = None
        if self.mask is not None:
            masks = {str(p): (str(m) if (m := self.mask_for(p)) else None) for p in inputs}
        return {
            "mask": str(self.mask) if self.mask else None,
            "mask_files": masks,
            "lambda_inside": self.inside,
            "lambda_outside": self.outside,
            "feather": self.feather,
            "protect": list(self.protect) or None,
            "protect_pair": self.protect_pair if self.protect else None,
            "protect_pairs": {k: list(protect_pair(k, self.protect_pair)) for k in self.protect} or None,
        }
