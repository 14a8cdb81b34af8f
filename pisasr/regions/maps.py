"""Region-adaptive restoration: a (lambda_pix, lambda_sem) pair per pixel instead of one per image.

``z_H = z_L - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix)`` is computed per latent position, so the
lambdas can be maps at no extra UNet cost: the maps enter only the recombination (``Latents.combine``).

- ``LambdaMap(pix, sem, feather)``: each lambda a number or a 2-D map (array, tensor or PIL image) at the output
  size, or any size of the output's aspect ratio.
- ``RegionMap(mask, inside, outside, feather)``: a mask (white / 1 = the region, soft values blend) with one pair
  inside and one outside; either pair may itself be a ``LambdaMap`` or ``RegionMap`` (layers).

A map is brought to the latent grid by exact area averaging over the model-size image (which may be an
enlargement of a small input), reflected into the padding as the image is, then optionally feathered: a Gaussian
of sigma ``feather / 3`` output pixels, cut at ``feather``. A latent cell whose whole support (area and feather)
holds one value keeps that value exactly, so each region equals its pair's scalar latents to the bit outside the
feather width, and a constant map takes the scalar code path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from pisasr.config import check_lambda
from pisasr.errors import ConfigError, ImageError

Plane = torch.Tensor  # [H, W] float64
Value = float | torch.Tensor  # a lambda on the latent grid: a number, or [B, 1, h, w] float64


@dataclass(eq=False)  # compared and hashed by identity: results are keyed by the object passed in
class LambdaMap:
    """Per-pixel lambdas; ``pix`` and ``sem`` each a number or a 2-D map (integer images read as 0..1)."""

    pix: object
    sem: object
    feather: float = 0.0
    name: str = "lambda map"


@dataclass(eq=False)
class RegionMap:
    """``inside`` where ``mask`` is 1 (white), ``outside`` where it is 0; pairs or nested maps."""

    mask: object  # 2-D array / tensor / PIL image / path; integer images read as 0..1
    inside: object
    outside: object
    feather: float = 0.0
    name: str | None = None  # for messages; a path mask names its file


Spec = tuple[float, float] | LambdaMap | RegionMap


def is_spec(value) -> bool:
    return isinstance(value, (LambdaMap, RegionMap))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def as_pair(pair) -> Spec:
    """A pair of numbers -> ``(float, float)`` (nan or inf is a ``ConfigError``: they would decode to black); a
    map object stays itself; a pair holding a map -> LambdaMap."""
    if is_spec(pair):
        return pair
    lambda_pix, lambda_sem = pair
    if _is_number(lambda_pix) and _is_number(lambda_sem):
        return check_lambda(float(lambda_pix), "lambda_pix"), check_lambda(float(lambda_sem), "lambda_sem")
    if is_spec(lambda_pix) or is_spec(lambda_sem):
        raise ConfigError(
            "a RegionMap or LambdaMap is a whole pair: pass it instead of (lambda_pix, lambda_sem)"
        )
    return LambdaMap(lambda_pix, lambda_sem)


# -- reading maps ------------------------------------------------------------------------------------------------
def read_mask(path: str | os.PathLike) -> Plane:
    """A mask image file -> [H, W] in [0, 1] (luma; 16-bit read at 16 bits); ImageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: mask file not found")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I") and img.mode != "I":  # I;16 and friends
                img = img.convert("I")
            if img.mode == "I":
                return torch.from_numpy(np.asarray(img, dtype=np.float64) / 65535.0).clamp(0, 1)
            return torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float64) / 255.0)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"{path}: cannot read mask ({str(exc).splitlines()[0] or type(exc).__name__})"
        ) from None


def to_plane(value, name: str) -> Plane:
    """A 2-D array, tensor or PIL image -> [H, W] float64; integer kinds as fractions of their full scale."""
    if isinstance(value, (str, os.PathLike)):
        return read_mask(value)
    if isinstance(value, Image.Image):
        if value.mode in ("1", "L", "P", "RGB", "RGBA", "LA"):
            return torch.from_numpy(np.asarray(value.convert("L"), dtype=np.float64) / 255.0)
        if value.mode.startswith("I;16"):
            return torch.from_numpy(np.asarray(value.convert("I"), dtype=np.float64) / 65535.0)
        value = np.asarray(value)  # F and I: the values themselves
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ConfigError(f"{name}: a map must be 2-D (height x width), got shape {tuple(array.shape)}")
    if array.dtype == bool:
        array = array.astype(np.float64)
    elif array.dtype in (np.uint8, np.uint16):  # image samples: 0..1 of the type's full scale
        array = array.astype(np.float64) / float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.integer):  # other integers: a 0/1 mask, nothing else has a known scale
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ConfigError(
                f"{name}: a {array.dtype} map must hold 0 and 1 only (use uint8/uint16 images or floats)"
            )
        array = array.astype(np.float64)
    plane = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    if not torch.isfinite(plane).all():
        raise ConfigError(f"{name}: the map holds non-finite values (NaN or inf)")
    return plane


def check_aspect(plane: Plane, out_size: tuple[int, int], name: str) -> None:
    """The map covers the output: its size may differ, its aspect ratio (to a pixel) may not."""
    (h, w), (out_h, out_w) = plane.shape, out_size
    if abs(w * out_h / out_w - h) > 1 and abs(h * out_w / out_h - w) > 1:
        raise ImageError(
            f"{name}: a {w}x{h} mask does not have the aspect ratio of the {out_w}x{out_h} output "
            "(give it at the output or input size)"
        )


# -- to the latent grid ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatentGrid:
    """Where a map lands: the output size it is given at, the model size, and the padded latent grid."""

    out_size: tuple[int, int]
    model_size: tuple[int, int]
    latent_size: tuple[int, int]
    cell: int  # model pixels per latent cell (the VAE's scale)

    @classmethod
    def of(cls, geometry, cell: int) -> LatentGrid:
        padded = [m + p for m, p in zip(geometry.model_size, geometry.pad)]
        return cls(
            tuple(geometry.out_size), tuple(geometry.model_size), (padded[0] // cell, padded[1] // cell), cell
        )

    @property
    def cells_per_output_pixel(self) -> float:
        return self.model_size[0] / self.out_size[0] / self.cell


def _cell_runs(n_cells: int, model_len: int, source_len: int, cell: int):
    """Per latent cell along one axis: its model pixels in the image [a, b) and those it gets from the reflect
    padding, [c, d) (empty where c == d), and the source pixels its support spans, [first, last] (integers)."""
    start = torch.arange(n_cells, dtype=torch.int64) * cell
    end = start + cell
    a, b = start.clamp(max=model_len), end.clamp(max=model_len)
    padded_from = torch.maximum(start, torch.tensor(model_len))
    c = torch.where(end > padded_from, 2 * (model_len - 1) - (end - 1), 0)
    d = torch.where(end > padded_from, 2 * (model_len - 1) - padded_from + 1, 0)
    low = torch.where(d > c, torch.minimum(a, c), a)
    high = torch.where(d > c, torch.maximum(b, d), b)
    first = low * source_len // model_len
    last = (high * source_len + model_len - 1) // model_len - 1
    return (a, b), (c, d), first, last


def _axis_average(plane: Plane, runs, model_len: int, cell: int) -> Plane:
    """Area average along dim 0: each model pixel r covers source rows [r, r + 1) * source_len / model_len."""
    source_len = plane.shape[0]
    total = torch.cat([torch.zeros_like(plane[:1]), plane.cumsum(0)])

    def integral(pixel: torch.Tensor) -> Plane:  # the sum of the source rows over [0, pixel * scale)
        x = pixel.to(torch.float64) * source_len / model_len
        row = x.floor().long().clamp(max=source_len - 1)
        return total[row] + (x - row)[:, None] * plane[row]

    out = torch.zeros(len(runs[0][0]), plane.shape[1], dtype=plane.dtype)
    for lo, hi in runs:
        count = (hi - lo).to(torch.float64)[:, None]
        spans = torch.where(count > 0, count, 1.0) * source_len / model_len
        out += torch.where(count > 0, (integral(hi) - integral(lo)) / spans * count, 0.0)
    return out / cell


def _range_extreme(plane: Plane, first: torch.Tensor, last: torch.Tensor, largest: bool) -> Plane:
    """Max (or min) along dim 0 of ``plane`` over the rows [first_i, last_i] of each cell i."""
    steps = torch.arange(int((last - first).max()) + 1)
    rows = torch.minimum(first[:, None] + steps[None], last[:, None])  # [cells, longest span]
    picked = plane[rows]
    return picked.amax(1) if largest else picked.amin(1)


def _support_extreme(plane: Plane, rows, cols, largest: bool) -> Plane:
    """Max (or min) of ``plane`` over each cell's support rectangle ([first, last] source rows and columns)."""
    by_row = _range_extreme(plane, *rows, largest)
    return _range_extreme(by_row.T, *cols, largest).T


def area_average(plane: Plane, grid: LatentGrid) -> Plane:
    """Exact area average of ``plane`` (covering the output) on the latent grid, with the image's reflect
    padding; cells whose support holds one value keep it to the bit (averaging weights do not sum exactly)."""
    (h, w), (model_h, model_w) = grid.latent_size, grid.model_size
    *row_runs, row_first, row_last = _cell_runs(h, model_h, plane.shape[0], grid.cell)
    *col_runs, col_first, col_last = _cell_runs(w, model_w, plane.shape[1], grid.cell)
    mean = _axis_average(_axis_average(plane, row_runs, model_h, grid.cell).T, col_runs, model_w, grid.cell).T
    rows, cols = (row_first, row_last), (col_first, col_last)
    high = _support_extreme(plane, rows, cols, largest=True)
    low = _support_extreme(plane, rows, cols, largest=False)
    return torch.where(high == low, high, mean)


def feather(plane: Plane, width: float, grid: LatentGrid) -> Plane:
    """Gaussian blur of sigma ``width / 3`` output pixels cut at ``width``; uniform windows keep their value."""
    radius_cells = width * grid.cells_per_output_pixel
    radius = math.ceil(radius_cells - 1e-9)
    if width <= 0 or radius < 1:
        return plane
    sigma = radius_cells / 3
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    padded = F.pad(plane[None, None], (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(F.conv2d(padded, kernel.view(1, 1, -1, 1)), kernel.view(1, 1, 1, -1))[0, 0]
    size = 2 * radius + 1
    high = F.max_pool2d(padded, size, stride=1)[0, 0]
    low = -F.max_pool2d(-padded, size, stride=1)[0, 0]
    return torch.where(high == low, plane, blurred)


def _lerp(weight: Plane, inside: Value, outside: Value) -> Value:
    """weight * inside + (1 - weight) * outside, exact where weight is 0 or 1 and where both agree."""
    if _is_number(inside) and _is_number(outside) and inside == outside:
        return inside
    inside_t, outside_t = (
        torch.as_tensor(inside, dtype=torch.float64),
        torch.as_tensor(outside, dtype=torch.float64),
    )
    blended = weight * inside_t + (1 - weight) * outside_t
    return torch.where(inside_t == outside_t, inside_t.expand_as(blended), blended)


def _map_plane(value, spec_name: str, grid: LatentGrid, width: float) -> Value:
    if _is_number(value):
        return check_lambda(float(value), spec_name)
    plane = to_plane(value, spec_name)
    check_aspect(plane, grid.out_size, spec_name)
    return feather(area_average(plane, grid), width, grid)


def _region_weight(region: RegionMap, grid: LatentGrid) -> Plane:
    name = region.name or (str(region.mask) if isinstance(region.mask, (str, os.PathLike)) else "mask")
    plane = to_plane(region.mask, name)
    if plane.min() < 0 or plane.max() > 1:
        raise ConfigError(f"{name}: mask values must lie in [0, 1] (white = the region)")
    check_aspect(plane, grid.out_size, name)
    return feather(area_average(plane, grid), region.feather, grid)


def latent_pair(spec: Spec, grid: LatentGrid) -> tuple[Value, Value]:
    """(lambda_pix, lambda_sem) on the latent grid of one image: numbers or [h, w] float64 planes."""
    if not is_spec(spec):
        return float(spec[0]), float(spec[1])
    if isinstance(spec, LambdaMap):
        return (
            _map_plane(spec.pix, f"{spec.name} (lambda_pix)", grid, spec.feather),
            _map_plane(spec.sem, f"{spec.name} (lambda_sem)", grid, spec.feather),
        )
    weight = _region_weight(spec, grid)
    inside, outside = latent_pair(as_pair(spec.inside), grid), latent_pair(as_pair(spec.outside), grid)
    return _lerp(weight, inside[0], outside[0]), _lerp(weight, inside[1], outside[1])


def _as_scalar(value: Value) -> Value:
    """A plane holding one value everywhere becomes that number: the scalar code path, bit for bit."""
    if isinstance(value, torch.Tensor):
        first = value.flatten()[0]
        if bool((value == first).all()):
            return float(first)
    return value


def batch_lambdas(specs: Sequence[Spec], grids: Sequence[LatentGrid]) -> tuple[Value, Value]:
    """One spec per image -> (lambda_pix, lambda_sem) for the batch: numbers where every image holds the same
    constant, else [B, 1, h, w] float64 maps."""
    per_image = [tuple(_as_scalar(v) for v in latent_pair(s, g)) for s, g in zip(specs, grids)]
    out = []
    for k in range(2):
        values = [pair[k] for pair in per_image]
        if all(_is_number(v) for v in values) and len(set(values)) == 1:
            out.append(values[0])
        else:
            size = grids[0].latent_size
            out.append(
                torch.stack([torch.as_tensor(v, dtype=torch.float64).expand(size) for v in values])[:, None]
            )
    return out[0], out[1]


def combine_maps(latents, lambda_pix: Value, lambda_sem: Value) -> torch.Tensor:
    """``Latents.combine`` with maps: the same operations as the scalar path, per latent position."""
    z = latents.z_lr
    sem = torch.as_tensor(lambda_sem, dtype=torch.float64)
    # the difference in float64, as Python subtracts two scalar lambdas, then cast: the scalar path's numbers
    diff = torch.as_tensor(lambda_pix, dtype=torch.float64) - sem
    if bool((sem != 0).any()):
        if latents.eps_full is None:
            raise ValueError("these latents have no eps_full; predict with the map (it has lambda_sem != 0)")
        z = z - sem.to(z.device, z.dtype) * latents.eps_full
    if bool((diff != 0).any()):
        if latents.eps_pix is None:
            raise ValueError("these latents have no eps_pix; predict with the map (its lambdas differ)")
        z = z - diff.to(z.device, z.dtype) * latents.eps_pix
    return z


# -- which UNet passes a spec needs ------------------------------------------------------------------------------
def _values(value) -> torch.Tensor:
    if _is_number(value):
        return torch.as_tensor(check_lambda(float(value), "lambda"), dtype=torch.float64)
    return to_plane(value, "map")


def spec_passes(spec) -> tuple[bool, bool]:
    """(needs eps_full, needs eps_pix): any lambda_sem != 0, any lambda_pix != lambda_sem (decided on the values)."""
    spec = as_pair(spec)
    if not is_spec(spec):
        return spec[1] != 0, spec[0] != spec[1]
    if isinstance(spec, LambdaMap):
        pix, sem = _values(spec.pix), _values(spec.sem)
        full = bool((sem != 0).any())
        if pix.dim() == sem.dim() == 0 or pix.shape == sem.shape or min(pix.dim(), sem.dim()) == 0:
            return full, bool((pix != sem).any())
        return full, True  # maps of different sizes: conservatively both
    weight = to_plane(spec.mask, spec.name or "mask")
    used = [
        p for p, present in ((spec.inside, weight.max() > 0), (spec.outside, weight.min() < 1)) if present
    ]
    needs = [spec_passes(p) for p in used]
    return any(n[0] for n in needs), any(n[1] for n in needs)
