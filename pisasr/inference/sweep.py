"""Lambda sweeps: parsing ``"0.5,1.0:0,1.0"``, output names, and the labelled contact sheet."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from pisasr.config import check_lambda
from pisasr.errors import ConfigError
from pisasr.io.images import to_pil


def parse_sweep(spec: str) -> tuple[list[float], list[float]]:
    """``"0.5,1.0,1.5:0,0.5,1.0"`` -> ([0.5, 1.0, 1.5], [0.0, 0.5, 1.0]) (pix values : sem values)."""
    try:
        pix, sem = spec.split(":")
        values = (
            [float(v) for v in pix.split(",") if v.strip()],
            [float(v) for v in sem.split(",") if v.strip()],
        )
    except ValueError:
        raise ConfigError(
            f"--sweep {spec!r} must look like '0.5,1.0,1.5:0,0.5,1.0' (pix values : sem values)"
        ) from None
    if not values[0] or not values[1]:
        raise ConfigError(f"--sweep {spec!r} needs at least one pix value and one sem value")
    for value in values[0] + values[1]:
        check_lambda(value, f"--sweep {spec!r}")
    return values


def format_lambda(value: float) -> str:
    text = f"{value:g}"
    return text if "." in text or "e" in text else f"{text}.0"


def sweep_name(stem: str, lambda_pix: float, lambda_sem: float, ext: str = "png") -> str:
    return f"{stem}_pix{format_lambda(lambda_pix)}_sem{format_lambda(lambda_sem)}.{ext}"


def contact_sheet(
    images: dict[tuple[float, float], torch.Tensor],
    pix_values: list[float],
    sem_values: list[float],
    cell: int = 256,
) -> Image.Image:
    """Grid with one row per lambda_pix and one column per lambda_sem, each cell labelled with both."""
    label_h = 18
    sheet = Image.new("RGB", (cell * len(sem_values), (cell + label_h) * len(pix_values)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for row, lp in enumerate(pix_values):
        for col, ls in enumerate(sem_values):
            img = to_pil(images[(lp, ls)]).convert("RGB")
            img.thumbnail((cell, cell), Image.Resampling.LANCZOS)
            x, y = col * cell, row * (cell + label_h)
            sheet.paste(img, (x + (cell - img.width) // 2, y + label_h + (cell - img.height) // 2))
            draw.text(
                (x + 4, y + 3), f"pix {format_lambda(lp)}  sem {format_lambda(ls)}", fill="black", font=font
            )
    return sheet
