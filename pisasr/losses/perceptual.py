"""LPIPS(VGG) from the ``lpips`` package, with a clear message when its VGG16 weights cannot be fetched."""

from __future__ import annotations

import warnings

import torch

from pisasr.errors import ModelLoadError


def make_lpips(pretrained_vgg: bool = True) -> torch.nn.Module:
    """LPIPS with VGG16 features. ``pretrained_vgg=False`` keeps the real LPIPS code and its shipped linear
    heads but a randomly initialised VGG backbone (offline smoke runs and tests: no download)."""
    import lpips

    try:
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=not pretrained_vgg, verbose=False)
    except Exception as exc:  # URLError, OSError, RuntimeError from the download
        hub = torch.hub.get_dir()
        raise ModelLoadError(
            f"LPIPS needs torchvision's VGG16 weights ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"offline, place vgg16-397923af.pth in {hub}/checkpoints, or set train.lpips_vgg_pretrained=false (smoke only)"
        ) from None
    model.requires_grad_(False)
    return model.eval()
