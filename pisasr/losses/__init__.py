"""Training losses: classifier score distillation (CSD) and LPIPS (from the ``lpips`` package)."""

from pisasr.losses.csd import CSDLoss
from pisasr.losses.perceptual import make_lpips

__all__ = ["CSDLoss", "make_lpips"]
