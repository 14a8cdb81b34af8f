"""AddSR's projected discriminator (StyleGAN-T's) on frozen DINO ViT-S/16 features, conditioned on DINOv2.

Following NJU-PCALab/AddSR ``ADD/models/discriminator.py``, ``vit_utils.py``, ``shared.py`` and ``DiffAugment.py``:

* Features (``DINO``, ``discriminator.py:108-130``; ``vit_utils.py:36-46,117-149``): the frozen DINO ViT-S/16
  (here transformers' ``ViTModel``, hub id ``facebook/dino-vits16``) on the image in [0, 1], area-resized to 224
  and ImageNet-normalised; five token maps: after the patch embedding (with position embedding, the ``pos_drop``
  hook) and after blocks 2, 5, 8, 11 (before the final norm), each with the CLS token added to every patch token
  (``AddReadout``) and laid out ``[B, C, tokens]``. transformers' ``hidden_states[0]`` is the embedding output and
  ``hidden_states[i + 1]`` block ``i``'s.
* One head per map (``DiscHead``, ``discriminator.py:64-105``): a spectral-norm 1-D convolution (kernel 1) with
  GroupNorm(4) and LeakyReLU 0.2, a residual block (``shared.py:20-26``: ``(f(x) + x) / sqrt(2)``) around the same
  with kernel 9 and circular padding, a spectral-norm 1x1 projection to 64 channels, and the projection onto the
  condition mapped to 64 by an equalised-learning-rate linear layer (``shared.py:29-64``):
  ``logit = sum_c(out * cmap) / sqrt(64)`` per token. The heads' logits are concatenated: ``[B, 5 * 196]`` at 224.
* Input (``ProjectedDiscriminator.forward``, ``discriminator.py:155-177``): DiffAugment translation (1/8) and
  cutout (0.2) on the image in [-1, 1] (``DiffAugment.py:65-95``), then to [0, 1], then a random 224 crop with
  probability 0.5 when the image is larger than 224.
* Condition (``train_addsr.py:1108-1110,1448``): the CLS token (after the final norm) of the frozen DINOv2
  ViT-S/14 (transformers' ``Dinov2Model``, ``facebook/dinov2-small``) on the LR image in [0, 1], bilinearly
  resized to 518; AddSR does not ImageNet-normalise this input, and neither does this port.

Random draws (augmentation, crop) come from the step's generator, not from numpy's and torch's global state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from pisasr.errors import ModelLoadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOOKS = (2, 5, 8, 11)  # blocks whose outputs the heads see, plus the patch embedding
CMAP_DIM = 64


def load_vit(name: str, kind: str) -> nn.Module:
    """A frozen transformers ``ViTModel`` (``kind="dino"``) or ``Dinov2Model`` (``"dinov2"``) from a hub id or a
    local folder; a missing model is one line naming it."""
    from transformers import Dinov2Model, ViTModel

    cls = {"dino": ViTModel, "dinov2": Dinov2Model}[kind]
    kwargs = {"add_pooling_layer": False} if kind == "dino" else {}
    try:
        model = cls.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load the {kind.upper()} model {name!r} for train.sem_objective=add ({reason}); set "
            f"train.add.{kind} to a hub id in the Hugging Face cache or a local folder"
        ) from None
    return model.requires_grad_(False).eval()


class EqualizedLinear(nn.Module):
    """StyleGAN's linear layer: weight ~ N(0, 1) scaled by 1/sqrt(in) at run time, bias 0 (``shared.py:29-64``)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.gain = 1 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.gain, self.bias)


def _sn_conv(channels_in: int, channels_out: int, kernel: int) -> nn.Module:
    conv = nn.Conv1d(channels_in, channels_out, kernel, padding=kernel // 2, padding_mode="circular")
    return spectral_norm(conv, n_power_iterations=1, eps=1e-12, dim=0)


def _block(channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(_sn_conv(channels, channels, kernel), nn.GroupNorm(4, channels), nn.LeakyReLU(0.2))


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fn(x) + x) / math.sqrt(2)


class DiscHead(nn.Module):
    def __init__(self, channels: int, c_dim: int, cmap_dim: int = CMAP_DIM):
        super().__init__()
        self.main = nn.Sequential(_block(channels, 1), Residual(_block(channels, 9)))
        self.cls = _sn_conv(channels, cmap_dim, 1)
        self.cmapper = EqualizedLinear(c_dim, cmap_dim)
        self.cmap_dim = cmap_dim

    def forward(self, tokens: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """tokens ``[B, C, N]``, condition ``[B, c_dim]`` -> logits ``[B, N]``."""
        out = self.cls(self.main(tokens))
        cmap = self.cmapper(condition).unsqueeze(-1)
        return (out * cmap).sum(1) / math.sqrt(self.cmap_dim)


def diff_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """DiffAugment's ``translation`` (ratio 1/8, zero padding) then ``cutout`` (ratio 0.2), per sample."""
    b, _, h, w = x.shape
    dev = x.device

    def draw(low, high):
        return torch.randint(low, high, (b, 1, 1), generator=generator).to(dev)

    sx, sy = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
    tx, ty = draw(-sx, sx + 1), draw(-sy, sy + 1)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=dev), torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij"
    )
    gx, gy = (gx + tx + 1).clamp(0, h + 1), (gy + ty + 1).clamp(0, w + 1)
    x = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)
    ch, cw = int(h * 0.2 + 0.5), int(w * 0.2 + 0.5)
    ox, oy = draw(0, h + (1 - ch % 2)), draw(0, w + (1 - cw % 2))
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=dev), torch.arange(ch, device=dev), torch.arange(cw, device=dev), indexing="ij"
    )
    gx, gy = (gx + ox - ch // 2).clamp(0, h - 1), (gy + oy - cw // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=dev)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


class DinoFeatures(nn.Module):
    """The five token maps of the frozen DINO ViT; input in [0, 1]."""

    def __init__(self, vit: nn.Module, hooks: tuple[int, ...] = HOOKS):
        super().__init__()
        self.vit, self.hooks = vit, hooks
        self.resolution = vit.config.image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def channels(self) -> int:
        return self.vit.config.hidden_size

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(x, self.resolution, mode="area")
        x = (x - self.mean) / self.std
        dtype = self.vit.embeddings.patch_embeddings.projection.weight.dtype
        hidden = self.vit(pixel_values=x.to(dtype), output_hidden_states=True).hidden_states
        maps = [hidden[i + 1] for i in self.hooks] + [hidden[0]]
        return [(h[:, 1:] + h[:, :1]).transpose(1, 2).float() for h in maps]


class ProjectedDiscriminator(nn.Module):
    """Trainable heads on frozen DINO features; ``forward(image in [-1, 1], condition, generator)``."""

    def __init__(self, features: DinoFeatures, c_dim: int, crop_prob: float = 0.5, augment: bool = True):
        super().__init__()
        self.features, self.crop_prob, self.augment = features, crop_prob, augment
        features.requires_grad_(False)
        self.heads = nn.ModuleList(DiscHead(features.channels, c_dim) for _ in range(len(features.hooks) + 1))

    def forward(self, x: torch.Tensor, condition: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.augment:
            x = diff_augment(x, generator)
        x = x.add(1).div(2)
        size = self.features.resolution
        if x.shape[-1] > size and torch.rand((), generator=generator).item() < self.crop_prob:
            top = int(torch.randint(0, x.shape[-2] - size + 1, (), generator=generator))
            left = int(torch.randint(0, x.shape[-1] - size + 1, (), generator=generator))
            x = x[..., top : top + size, left : left + size]
        maps = self.features(x)
        return torch.cat([head(m, condition.float()) for head, m in zip(self.heads, maps)], dim=1)


class Dinov2Condition(nn.Module):
    """The CLS token (after the final norm) of the frozen DINOv2 on the LR image (in [-1, 1] here)."""

    def __init__(self, model: nn.Module, resolution: int = 518):
        super().__init__()
        self.model, self.resolution = model, resolution

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @torch.no_grad()
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(lr.add(1).div(2), size=self.resolution, mode="bilinear")
        dtype = next(self.model.parameters()).dtype
        return self.model(pixel_values=x.to(dtype)).pooler_output.float()
