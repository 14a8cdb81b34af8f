"""Regions for the CLI: mask files (one for all inputs, or a folder with one per input stem), protected faces,
the per-image ``RegionMap`` and the latent-resolution maps written with ``--save_masks``."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from pisasr.errors import ImageError, plural
from pisasr.io.files import atomic_write
from pisasr.io.images import IMAGE_SUFFIXES
from pisasr.regions.maps import LatentGrid, RegionMap, check_aspect, latent_pair, protect, read_mask


def _mask_files(mask: Path) -> dict[str, Path]:
    files = sorted(f for f in mask.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    by_stem: dict[str, Path] = {}
    for f in files:
        by_stem.setdefault(f.stem, f)
    return by_stem


@dataclass
class RegionPlan:
    """How each input's pair is built: its mask (if any) inside ``inside``, faces inside ``protect_pair``."""

    mask: Path | None
    inside: tuple[float, float] | None
    outside: tuple[float, float]
    feather: float
    protect: str | None
    protect_pair: tuple[float, float]
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
        return cls(
            mask=mask,
            inside=tuple(map(float, o.lambda_inside)) if o.lambda_inside is not None else None,
            outside=(float(outside[0]), float(outside[1])),
            feather=float(o.feather),
            protect=o.protect,
            protect_pair=(float(o.protect_pair[0]), float(o.protect_pair[1])),
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
        if self.protect:
            spec = protect(spec, prepared.reference, self._detector(path), self.protect_pair, feather)
        if self.save_dir is not None:
            self.save_maps(path.stem, spec, LatentGrid.of(prepared.geometry, self.cell))
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

    def _detector(self, path: Path):
        """``--protect faces`` with one line per image saying how many faces it found; another detector as is."""
        if self.protect != "faces":
            return self.protect
        from pisasr.regions.faces import detect_faces, face_mask

        def faces(image):
            boxes = detect_faces(image)
            found = plural(len(boxes), "face") if boxes else "no face"
            self._note_once(f"faces {path}", f"{path}: {found} found (--protect faces)")
            return face_mask(image, boxes=boxes)

        return faces

    def map_files(self, stem: str) -> list[Path]:
        """Where ``--save_masks`` writes an input's maps (none without it)."""
        if self.save_dir is None:
            return []
        return [self.save_dir / f"{stem}_lambda_{name}.tiff" for name in ("pix", "sem")]

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
            "protect": self.protect,
            "protect_pair": self.protect_pair if self.protect else None,
        }
