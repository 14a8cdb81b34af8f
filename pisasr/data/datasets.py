"""Datasets: GT crops for training (with per-sample degradation kernels and prompts) and paired test sets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pisasr.data.degradation import DegradationParams, check_gt_size, sample_kernels
from pisasr.errors import ConfigError, PiSAError
from pisasr.io.images import IMAGE_SUFFIXES, list_inputs, read_image


def read_file_list(path: str | Path) -> list[Path]:
    """Paths from a list file (one per line, relative to the list's folder); missing files are an error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset list not found: {path}")
    lines = [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    files = [Path(line) if Path(line).is_absolute() else path.parent / line for line in lines]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(
            f"{path}: {len(missing)} listed file(s) do not exist, e.g. {', '.join(missing[:3])}"
        )
    return files


def scan_folder(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"dataset folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_prompts(path: str | Path) -> dict[str, str]:
    """JSONL of ``{"path": ..., "prompt": ...}``; keys are resolved paths."""
    prompts = {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompts file not found: {path}")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompts[str(Path(row["path"]).resolve())] = str(row["prompt"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number}: expected a JSON object with 'path' and 'prompt'") from None
    return prompts


class GTDataset(Dataset):
    """Random GT crops with random horizontal flip, per-sample degradation kernels and a prompt.

    Samples are a pure function of ``(seed, epoch, index)``, so a resumed run sees the same data. A file that
    cannot be read, or (with ``small_images="skip"``) is smaller than the crop, is replaced by another draw and
    counted in the sample's ``skipped`` field; the training loop sums and logs it.
    """

    def __init__(
        self,
        files: Sequence[Path],
        degradation: DegradationParams,
        crop_size: int = 512,
        hq_files: Sequence[Path] = (),
        hq_sample_prob: float = 0.0,
        prompts: dict[str, str] | None = None,
        small_images: str = "skip",
        seed: int = 0,
    ):
        if not files:
            raise ConfigError("the training set is empty: set data.gt_lists or data.gt_dirs")
        if crop_size % degradation.scale:
            raise ConfigError(
                f"data.crop_size={crop_size} must be divisible by the degradation scale {degradation.scale}"
            )
        check_gt_size(degradation, crop_size, "data.crop_size")
        self.files, self.hq_files = list(files), list(hq_files)
        self.degradation, self.crop_size, self.hq_sample_prob = degradation, crop_size, hq_sample_prob
        self.prompts = prompts or {}
        self.small_images, self.seed, self.epoch = small_images, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def _load_crop(self, path: Path, rng: np.random.Generator) -> torch.Tensor | None:
        try:
            rgb = read_image(path).rgb
        except PiSAError:
            return None
        size = self.crop_size
        h, w = rgb.shape[-2:]
        if min(h, w) < size:
            if self.small_images == "skip":
                return None
            scale = size / min(h, w)
            new = (max(size, round(h * scale)), max(size, round(w * scale)))
            rgb = torch.nn.functional.interpolate(rgb[None], size=new, mode="bicubic", align_corners=False)[
                0
            ].clamp(0, 1)
            h, w = new
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = rgb[:, top : top + size, left : left + size]
        if rng.uniform() < 0.5:
            crop = crop.flip(-1)
        return crop.contiguous()

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        skipped, path, crop = 0, self.files[index], None
        for _ in range(100):
            if self.hq_files and rng.uniform() < self.hq_sample_prob:
                path = self.hq_files[int(rng.integers(len(self.hq_files)))]
            crop = self._load_crop(path, rng)
            if crop is not None:
                break
            skipped += 1
            path = self.files[int(rng.integers(len(self.files)))]
        if crop is None:
            raise PiSAError(f"100 draws in a row gave no usable image (last {path}); check the dataset")
        return {
            "gt": crop,
            **sample_kernels(self.degradation, rng),
            "prompt": self.prompts.get(str(Path(path).resolve()), ""),
            "skipped": skipped,
        }


def gt_files_from_config(gt_lists: Sequence[str], gt_dirs: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for path in gt_lists:
        files += read_file_list(path)
    for folder in gt_dirs:
        files += scan_folder(folder)
    return files


class PairedDataset(Dataset):
    """LR/HR test pairs matched by file stem (sorted). Unmatched names are an error that lists them."""

    def __init__(self, lr_dir: str | Path, hr_dir: str | Path):
        lr = {p.stem: p for p in list_inputs(lr_dir)}
        hr = {p.stem: p for p in list_inputs(hr_dir)}
        only_lr, only_hr = sorted(set(lr) - set(hr)), sorted(set(hr) - set(lr))
        if only_lr or only_hr:
            raise ConfigError(
                f"LR {lr_dir} and HR {hr_dir} do not match: "
                + (f"no HR for {', '.join(only_lr[:5])}" if only_lr else "")
                + ("; " if only_lr and only_hr else "")
                + (f"no LR for {', '.join(only_hr[:5])}" if only_hr else "")
            )
        self.names = sorted(lr)
        self.lr, self.hr = lr, hr

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        return {"name": name, "lr": read_image(self.lr[name]).rgb, "hr": read_image(self.hr[name]).rgb}
