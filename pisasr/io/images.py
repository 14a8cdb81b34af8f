"""Reading and writing images without losing what the user gave us.

``read_image`` returns RGB as a float tensor in [0, 1] plus what is needed to write the result back in kind:
grayscale stays grayscale, an alpha channel is kept aside (upscaled separately and re-attached), 16-bit PNG/TIFF
stays 16-bit, float TIFF in [0, 1] is kept (and written back as 16-bit), 32-bit integer samples are refused, and
EXIF orientation is applied. Every failure is an ``ImageError`` naming the file.
``save_image`` writes PNG atomically (temporary file, then rename), so an interrupted run leaves no half image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from pisasr.errors import ImageError
from pisasr.io.files import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")
_DEEP_SUFFIXES = (".png", *_TIFF_SUFFIXES)  # formats that hold more than 8 bits per sample
# Float samples this far outside [0, 1] are clipped (rounding in the tool that wrote them); further is an error.
FLOAT_TOLERANCE = 1e-3
# EXIF orientation -> numpy operations that undo it (same table as PIL.ImageOps.exif_transpose)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
    7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
    8: lambda a: np.swapaxes(a, 0, 1)[::-1],
}


@dataclass
class LoadedImage:
    rgb: torch.Tensor  # [3, H, W] float32 in [0, 1]
    alpha: torch.Tensor | None  # [1, H, W] float32 in [0, 1]
    grayscale: bool
    bit_depth: int  # 8 or 16 (also for float inputs: their output is 16-bit)
    path: Path | None = None


def list_inputs(path: str | os.PathLike) -> list[Path]:
    """An image file, a folder of images (sorted, case-insensitive suffixes) or a .txt list of paths."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"input not found: {p}")
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageError(f"input folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if p.suffix.lower() == ".txt":
        lines = [
            line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")
        ]
        if not lines:
            raise ImageError(f"input list {p} is empty")
        return [Path(line) if Path(line).is_absolute() else (p.parent / line) for line in lines]
    return [p]


def _to_tensor(array: np.ndarray, max_value: float) -> torch.Tensor:
    array = np.ascontiguousarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.astype(np.float32) / max_value).permute(2, 0, 1)


def _split(array: np.ndarray, max_value: float, bit_depth: int, path: Path) -> LoadedImage:
    """array: HxW, HxWx2 (gray+alpha), HxWx3 or HxWx4, RGB order."""
    if array.ndim == 3 and array.shape[2] in (2, 4):
        color, alpha = array[:, :, :-1], _to_tensor(array[:, :, -1], max_value)
    else:
        color, alpha = array, None
    grayscale = color.ndim == 2 or color.shape[2] == 1
    rgb = _to_tensor(color, max_value)
    if grayscale:
        rgb = rgb[:1].expand(3, -1, -1).contiguous()
    return LoadedImage(rgb=rgb, alpha=alpha, grayscale=grayscale, bit_depth=bit_depth, path=path)


def _from_array(array: np.ndarray, path: Path | None) -> LoadedImage:
    """HxW[xC] samples (RGB order) scaled by their type's range: 8 and 16 bits as such, floats must lie in
    [0, 1] (kept, written back as 16-bit); 32-bit integers and signed samples are refused (no range to trust)."""
    name = path if path is not None else "image"
    if not array.dtype.isnative:  # big-endian samples ("I;16B")
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype == np.uint8:
        return _split(array, 255.0, 8, path)
    if array.dtype == np.uint16:
        return _split(array, 65535.0, 16, path)
    if array.dtype.kind == "f":
        finite = np.isfinite(array).all()
        low, high = (float(array.min()), float(array.max())) if finite else (np.nan, np.nan)
        if not finite or low < -FLOAT_TOLERANCE or high > 1 + FLOAT_TOLERANCE:
            raise ImageError(
                f"{name}: float samples span [{low:.4g}, {high:.4g}], not [0, 1] (HDR or unnormalised data): "
                "scale them to [0, 1], or save as 8- or 16-bit"
            )
        return _split(np.clip(array, 0, 1).astype(np.float32), 1.0, 16, path)
    kind = "signed" if array.dtype.kind == "i" else "unsigned"
    raise ImageError(
        f"{name}: {8 * array.dtype.itemsize}-bit {kind} integer samples are not supported: "
        "save it as 8- or 16-bit, or as float in [0, 1]"
    )


def _more_than_eight_bits(img: Image.Image) -> bool:
    """PIL opens 16-bit colour PNG/TIFF as 8-bit "RGB"; the raw mode of the undecoded tile tells the truth."""
    if img.mode.startswith("I") or img.mode == "F":
        return True
    args = img.tile[0].args if img.tile else ""
    rawmode = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
    return "16" in rawmode


def _read_deep(path: Path, orientation: int) -> LoadedImage | None:
    """PIL truncates 16-bit colour PNG/TIFF to 8 bits and cannot open colour float or 32-bit TIFFs; OpenCV reads
    them exactly. None when OpenCV cannot read the file either."""
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        return None
    if array.ndim == 3 and array.shape[2] == 3:  # OpenCV is BGR(A)
        array = array[:, :, ::-1]
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    if orientation in _ORIENT:
        array = _ORIENT[orientation](array)
    return _from_array(array, path)


def read_image(path: str | os.PathLike) -> LoadedImage:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            deep = _more_than_eight_bits(img)
            img.load()
            orientation = img.getexif().get(0x0112, 1)
            if deep and path.suffix.lower() in _DEEP_SUFFIXES:
                loaded = _read_deep(path, orientation)
                if loaded is not None:
                    return loaded
            return from_pil(img, path)
    except UnidentifiedImageError:
        loaded = _read_deep(path, 1) if path.suffix.lower() in _TIFF_SUFFIXES else None
        if loaded is None:
            raise ImageError(f"{path}: not an image file (format not recognised)") from None
        return loaded
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"{path}: cannot read image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None


def from_pil(img: Image.Image, path: Path | None = None) -> LoadedImage:
    """PIL image -> LoadedImage: EXIF orientation applied; 16-bit ("I;16*") and float ("F") grayscale kept at
    their precision, 32-bit integer ("I") refused; palette and other modes to L/LA/RGB/RGBA."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "F" or img.mode.startswith("I"):
        return _from_array(np.asarray(img), path)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")
    return _split(np.asarray(img), 255.0, 8, path)


def assemble(rgb: torch.Tensor, alpha: torch.Tensor | None, grayscale: bool) -> torch.Tensor:
    """[3,H,W] RGB (+ [1,H,W] alpha) in [0,1] -> [C,H,W] with C in 1..4 matching the input's kind."""
    rgb = rgb.clamp(0, 1)
    if grayscale:  # ITU-R 601 luma, as PIL's convert("L")
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
        rgb = (rgb * weights).sum(0, keepdim=True)
    return torch.cat([rgb, alpha.clamp(0, 1)]) if alpha is not None else rgb


def to_pil(image: torch.Tensor) -> Image.Image:
    """[C,H,W] in [0,1] (C = 1..4) -> 8-bit PIL image."""
    array = (
        (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    )
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    return Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)


def save_image(image: torch.Tensor, path: str | os.PathLike, bit_depth: int = 8) -> Path:
    """Write [C,H,W] in [0,1] as PNG at ``path`` atomically; 16-bit when ``bit_depth == 16``."""
    if bit_depth != 16:
        return atomic_write(path, lambda tmp: to_pil(image).save(tmp, format="PNG"))
    import cv2

    array = (
        (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 65535.0)
        .round()
        .astype(np.uint16)
    )
    if array.shape[2] == 3:
        array = array[:, :, ::-1]
    elif array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    elif array.shape[2] == 2:  # OpenCV has no gray+alpha: store as RGBA
        array = array[:, :, [0, 0, 0, 1]]
    array = np.ascontiguousarray(array.squeeze(2) if array.shape[2] == 1 else array)

    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, array):
            raise OSError(f"cannot write {path}")

    return atomic_write(path, write, suffix=".png")


def from_array(array: np.ndarray) -> LoadedImage:
    """HxW or HxWxC (C = 1..4, RGB order) numpy image -> LoadedImage.

    uint8 is 8-bit, uint16 16-bit; floats must lie in [0, 1] and keep 16-bit precision through resizing.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"array of shape {array.shape}: expected HxW or HxWxC with C = 1, 2, 3 or 4")
    return _from_array(array, None)
