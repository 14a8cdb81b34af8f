"""Real-ESRGAN second-order degradation, split as Real-ESRGAN does for speed.

``sample_kernels`` runs per sample in dataloader workers (cheap numpy work): two blur kernels and the final sinc
kernel. ``Degrader`` runs batched on the training device: blur (``filter2D``), random resize, Gaussian/Poisson
noise, JPEG (``DiffJPEG``), twice, then the final sinc + JPEG in random order, giving the LQ at 1/scale size;
``model_input`` upsamples it back to the GT size with bicubic. Every primitive is basicsr's; the random choices
come from generators passed in (``rng.py``), so the same seed gives the same LQ batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.data.degradations import (
    circular_lowpass_kernel,
    random_add_gaussian_noise_pt,
    random_add_poisson_noise_pt,
    random_mixed_kernels,
)
from basicsr.utils import DiffJPEG
from basicsr.utils.img_process_util import filter2D
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pisasr.data.rng import numpy_seeded, torch_seeded
from pisasr.errors import ConfigError
from pisasr.io.paths import shipped

KERNELS = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
KERNEL_PROB = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]


@dataclass
class DegradationParams:
    scale: int = 4
    resize_prob: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])
    resize_range: list[float] = field(default_factory=lambda: [0.3, 1.5])
    gaussian_noise_prob: float = 0.5
    noise_range: list[float] = field(default_factory=lambda: [1.0, 15.0])
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 2.0])
    gray_noise_prob: float = 0.4
    jpeg_range: list[float] = field(default_factory=lambda: [60.0, 95.0])
    second_blur_prob: float = 0.5
    resize_prob2: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.3])
    resize_range2: list[float] = field(default_factory=lambda: [0.6, 1.2])
    gaussian_noise_prob2: float = 0.5
    noise_range2: list[float] = field(default_factory=lambda: [1.0, 12.0])
    poisson_scale_range2: list[float] = field(default_factory=lambda: [0.05, 1.0])
    gray_noise_prob2: float = 0.4
    jpeg_range2: list[float] = field(default_factory=lambda: [60.0, 100.0])
    kernel_size: int = 21
    kernel_list: list[str] = field(default_factory=lambda: list(KERNELS))
    kernel_prob: list[float] = field(default_factory=lambda: list(KERNEL_PROB))
    sinc_prob: float = 0.1
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 3.0])
    betag_range: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range: list[float] = field(default_factory=lambda: [1.0, 2.0])
    kernel_list2: list[str] = field(default_factory=lambda: list(KERNELS))
    kernel_prob2: list[float] = field(default_factory=lambda: list(KERNEL_PROB))
    sinc_prob2: float = 0.1
    blur_sigma2: list[float] = field(default_factory=lambda: [0.2, 1.5])
    betag_range2: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range2: list[float] = field(default_factory=lambda: [1.0, 2.0])
    final_sinc_prob: float = 0.8
    # Unsharp-mask the GT before degrading it (Real-ESRGAN / StableSR ``use_usm``); the GT itself is kept.
    usm_sharpen: bool = False


def load_degradation(path: str | Path | None = None, overrides: dict | None = None) -> DegradationParams:
    cfg = OmegaConf.structured(DegradationParams)
    # configs/degradation/*.yaml is the shipped file when the current folder has no such file
    path = shipped(path) if path is not None else None
    try:
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"degradation config not found: {path}")
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        if overrides:
            cfg = OmegaConf.merge(cfg, overrides)
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"{path}: bad degradation key '{getattr(exc, 'full_key', '?')}': {str(exc).splitlines()[0]}"
        ) from None
    params: DegradationParams = OmegaConf.to_object(cfg)
    if params.kernel_size % 2 == 0:
        raise ConfigError(f"{path}: kernel_size must be odd, got {params.kernel_size}")
    for name in ("resize_prob", "resize_prob2", "kernel_prob", "kernel_prob2"):
        if not math.isclose(sum(getattr(params, name)), 1.0, abs_tol=1e-6):
            raise ConfigError(f"{path}: {name} must sum to 1, got {getattr(params, name)}")
    return params


def smallest_gt(p: DegradationParams) -> int:
    """The smallest GT side (a multiple of ``scale``) this degradation can filter: basicsr reflect-pads by half the
    kernel, so the first-order output (down to ``resize_range[0]`` of the GT) and the LQ must stay larger."""
    half, size = p.kernel_size // 2, p.scale
    while int(size * min(p.resize_range[0], 1.0)) <= half or size // p.scale <= half:
        size += p.scale
    return size


def check_gt_size(p: DegradationParams, size: int, what: str) -> None:
    if size < smallest_gt(p):
        raise ConfigError(
            f"{what}={size} is too small for the degradation (kernel_size {p.kernel_size}, resize_range "
            f"{p.resize_range}, scale {p.scale}): use at least {smallest_gt(p)}"
        )


def _blur_kernel(p: DegradationParams, rng: np.random.Generator, second: bool) -> np.ndarray:
    sfx = "2" if second else ""
    kernel_size = int(rng.choice(np.arange(7, p.kernel_size + 1, 2)))
    if rng.uniform() < getattr(p, f"sinc_prob{sfx}"):
        omega_c = rng.uniform(np.pi / 3, np.pi) if kernel_size < 13 else rng.uniform(np.pi / 5, np.pi)
        kernel = circular_lowpass_kernel(omega_c, kernel_size, pad_to=False)
    else:
        sigma = getattr(p, f"blur_sigma{sfx}")
        with numpy_seeded(rng):  # basicsr samples the kernel shape from numpy's global RNG
            kernel = random_mixed_kernels(
                getattr(p, f"kernel_list{sfx}"),
                getattr(p, f"kernel_prob{sfx}"),
                kernel_size,
                sigma,
                sigma,
                [-math.pi, math.pi],
                getattr(p, f"betag_range{sfx}"),
                getattr(p, f"betap_range{sfx}"),
                noise_range=None,
            )
    pad = (p.kernel_size - kernel_size) // 2
    return np.pad(kernel, ((pad, pad), (pad, pad)))


def sample_kernels(p: DegradationParams, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """One sample's kernels: ``kernel1``, ``kernel2``, ``sinc_kernel`` ([k, k] float32 each)."""
    kernel1 = _blur_kernel(p, rng, second=False)
    kernel2 = _blur_kernel(p, rng, second=True)
    if rng.uniform() < p.final_sinc_prob:
        kernel_size = int(rng.choice(np.arange(7, p.kernel_size + 1, 2)))
        sinc = circular_lowpass_kernel(rng.uniform(np.pi / 3, np.pi), kernel_size, pad_to=p.kernel_size)
    else:  # a pulse: no final sinc filtering
        sinc = np.zeros((p.kernel_size, p.kernel_size))
        sinc[p.kernel_size // 2, p.kernel_size // 2] = 1
    as_tensor = lambda k: torch.from_numpy(np.ascontiguousarray(k)).float()  # noqa: E731
    return {"kernel1": as_tensor(kernel1), "kernel2": as_tensor(kernel2), "sinc_kernel": as_tensor(sinc)}


class Degrader:
    """Batched second-order degradation on one device; ``__call__(gt, kernels, generator) -> lq``."""

    MODES = ("area", "bilinear", "bicubic")

    def __init__(self, params: DegradationParams, device: torch.device | str = "cpu"):
        self.p = params
        self.device = torch.device(device)
        self.jpeger = DiffJPEG(differentiable=False).to(self.device)

    def _uniform(self, generator: torch.Generator, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    def _choice(self, generator: torch.Generator, options, probs=None):
        probs = torch.tensor(probs if probs is not None else [1.0] * len(options), dtype=torch.float64)
        return options[int(torch.multinomial(probs, 1, generator=generator))]

    def _resize_scale(self, generator, probs, scale_range) -> float:
        kind = self._choice(generator, ("up", "down", "keep"), probs)
        if kind == "up":
            return self._uniform(generator, 1, scale_range[1])
        if kind == "down":
            return self._uniform(generator, scale_range[0], 1)
        return 1.0

    def _noise(self, out, generator, gaussian_prob, sigma_range, poisson_range, gray_prob):
        if float(torch.rand((), generator=generator)) < gaussian_prob:
            return random_add_gaussian_noise_pt(
                out, sigma_range=sigma_range, clip=True, rounds=False, gray_prob=gray_prob
            )
        return random_add_poisson_noise_pt(
            out, scale_range=poisson_range, gray_prob=gray_prob, clip=True, rounds=False
        )

    def _jpeg(self, out, generator, quality_range):
        quality = torch.empty(out.size(0)).uniform_(*quality_range, generator=generator).to(out.device)
        return self.jpeger(out.clamp(0, 1), quality=quality)

    @torch.no_grad()
    def __call__(
        self,
        gt: torch.Tensor,
        kernels: dict[str, torch.Tensor],
        generator: torch.Generator,
        resize_back: bool = False,
    ) -> torch.Tensor:
        """gt [B, 3, H, W] in [0, 1] (H, W divisible by scale) -> LQ [B, 3, H/scale, W/scale] in [0, 1].

        ``resize_back``: as the official training data, resize the LQ back to [H, W] with a mode drawn from
        area / bilinear / bicubic *before* rounding to 8 bits (the model input at the GT size).
        """
        p, dev = self.p, self.device
        gt = gt.to(dev, torch.float32)
        k1, k2, sinc = (kernels[k].to(dev) for k in ("kernel1", "kernel2", "sinc_kernel"))
        height, width = gt.shape[-2:]
        if p.usm_sharpen:
            from basicsr.utils.img_process_util import USMSharp

            gt = USMSharp().to(dev)(gt).clamp(0, 1)
        with torch_seeded(generator, dev):  # basicsr's noise functions draw from torch's global RNG
            out = filter2D(gt.contiguous(), k1)
            scale = self._resize_scale(generator, p.resize_prob, p.resize_range)
            out = F.interpolate(out, scale_factor=scale, mode=self._choice(generator, self.MODES))
            out = self._noise(
                out, generator, p.gaussian_noise_prob, p.noise_range, p.poisson_scale_range, p.gray_noise_prob
            )
            out = self._jpeg(out, generator, p.jpeg_range)
            if float(torch.rand((), generator=generator)) < p.second_blur_prob:
                out = filter2D(out.contiguous(), k2)
            scale = self._resize_scale(generator, p.resize_prob2, p.resize_range2)
            size = (int(height / p.scale * scale), int(width / p.scale * scale))
            out = F.interpolate(out, size=size, mode=self._choice(generator, self.MODES))
            out = self._noise(
                out,
                generator,
                p.gaussian_noise_prob2,
                p.noise_range2,
                p.poisson_scale_range2,
                p.gray_noise_prob2,
            )
            final = (height // p.scale, width // p.scale)
            if float(torch.rand((), generator=generator)) < 0.5:  # resize + sinc, then JPEG
                out = F.interpolate(out, size=final, mode=self._choice(generator, self.MODES))
                out = filter2D(out.contiguous(), sinc)
                out = self._jpeg(out, generator, p.jpeg_range2)
            else:  # JPEG, then resize + sinc
                out = self._jpeg(out, generator, p.jpeg_range2)
                out = F.interpolate(out, size=final, mode=self._choice(generator, self.MODES))
                out = filter2D(out.contiguous(), sinc)
            if resize_back:
                out = F.interpolate(out, size=(height, width), mode=self._choice(generator, self.MODES))
        return (out * 255.0).round().clamp(0, 255) / 255.0


def model_input(lq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """LQ back to the GT size with bicubic (in [0, 1]): validation, and training with ``lq_upsample=bicubic``."""
    return F.interpolate(lq, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def training_input(
    degrader: Degrader,
    gt: torch.Tensor,
    kernels: dict[str, torch.Tensor],
    generator: torch.Generator,
    lq_upsample: str = "random",
) -> torch.Tensor:
    """The model input for a GT batch: degraded, then back at the GT size (see ``DataConfig.lq_upsample``)."""
    if lq_upsample == "random":
        return degrader(gt, kernels, generator, resize_back=True)
    return model_input(degrader(gt, kernels, generator), tuple(gt.shape[-2:]))
