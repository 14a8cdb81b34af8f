"""Dataset preparation: GT file lists and synthetic LR/HR test pairs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from pisasr.data.datasets import scan_folder
from pisasr.data.degradation import DegradationParams, Degrader, check_gt_size, sample_kernels
from pisasr.errors import PiSAError
from pisasr.io.images import read_image, save_image


def make_file_list(
    folders: Iterable[str | Path], min_size: int = 0, dedupe: str = "content"
) -> tuple[list[Path], dict]:
    """Images under ``folders`` whose short side is at least ``min_size``, duplicates removed.

    ``dedupe``: ``path`` (same resolved file) or ``content`` (same bytes, by SHA-1). Returns the files and counts
    of what was dropped.
    """
    kept: list[Path] = []
    seen: set[str] = set()
    dropped = {"small": 0, "duplicate": 0, "unreadable": 0}
    candidates = [p for folder in folders for p in scan_folder(folder)]
    for path in tqdm(candidates, desc="scan", unit="img"):
        try:
            with Image.open(path) as img:
                short = min(img.size)
        except OSError:
            dropped["unreadable"] += 1
            continue
        if short < min_size:
            dropped["small"] += 1
            continue
        key = hashlib.sha1(path.read_bytes()).hexdigest() if dedupe == "content" else str(path.resolve())
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        kept.append(path.resolve())
    return kept, dropped


def make_test_pairs(
    hr_dir: str | Path, out_dir: str | Path, params: DegradationParams, seed: int = 0, crop: int = 512
) -> tuple[int, list[str]]:
    """StableSR DIV2K-Val protocol: a random ``crop`` x ``crop`` HR patch per image (seeded) and its degraded LR
    (``crop / scale``). Writes ``out_dir/HR/<stem>.png`` and ``out_dir/LR/<stem>.png``; returns (written, skipped).
    """
    check_gt_size(params, crop, "--crop")
    out = Path(out_dir)
    (out / "HR").mkdir(parents=True, exist_ok=True)
    (out / "LR").mkdir(parents=True, exist_ok=True)
    degrade = Degrader(params, "cpu")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    written, skipped = 0, []
    for path in tqdm(scan_folder(hr_dir), desc="pairs", unit="img"):
        try:
            rgb = read_image(path).rgb
        except PiSAError as exc:
            skipped.append(str(exc))
            continue
        h, w = rgb.shape[-2:]
        if min(h, w) < crop:
            skipped.append(f"{path}: smaller than {crop}x{crop}")
            continue
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        hr = rgb[:, top : top + crop, left : left + crop]
        kernels = {k: v[None] for k, v in sample_kernels(params, rng).items()}
        lr = degrade(hr[None], kernels, generator)[0]
        save_image(hr, out / "HR" / f"{path.stem}.png")
        save_image(lr, out / "LR" / f"{path.stem}.png")
        written += 1
    return written, skipped
