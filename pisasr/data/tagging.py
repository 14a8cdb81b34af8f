"""On-the-fly tags for training crops: a CLIP-style model scores a tag vocabulary zero-shot, on the training device.

The official code tags every GT crop with RAM while it trains, so the prompts describe the crop, not the whole
photo. RAM is not in transformers; a CLIP dual encoder over a tag vocabulary is the closest maintained
equivalent. ``CropTagger`` takes the batch of GT crops already on the device (floats in [0, 1]) and returns one
prompt per crop: the ``top_k`` best tags joined by ", ". For crops of the processor's input size it gives exactly
the tags of transformers' zero-shot pipeline (``preprocess/extract_prompts.py --task tags``); larger crops are
resized on the device with torch's antialiased bicubic instead of PIL's.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pisasr.config import TaggerConfig
from pisasr.errors import ConfigError, ModelLoadError
from pisasr.io.paths import RESOURCES

DEFAULT_TAGGER = TaggerConfig.model
DEFAULT_VOCABULARY = RESOURCES / "tags_common.txt"
# transformers' zero-shot-image-classification default, so both routes give the same tags.
DEFAULT_TEMPLATE = TaggerConfig.template


def read_vocabulary(path: str | Path | None = None) -> list[str]:
    """Tags, one per line (blank lines and ``#`` comments skipped); ``None`` is pisasr's built-in list."""
    path = Path(path) if path else DEFAULT_VOCABULARY
    if not path.is_file():
        raise ConfigError(f"tag vocabulary not found: {path}")
    tags = [line.strip() for line in path.read_text().splitlines()]
    tags = list(dict.fromkeys(t for t in tags if t and not t.startswith("#")))
    if not tags:
        raise ConfigError(f"tag vocabulary {path} holds no tags")
    return tags


class CropTagger:
    """Zero-shot tags for image batches; the text side is embedded once and dropped."""

    def __init__(
        self,
        model: str = DEFAULT_TAGGER,
        vocabulary: list[str] | None = None,
        top_k: int = 8,
        template: str = DEFAULT_TEMPLATE,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        from transformers import AutoModel, AutoProcessor

        self.tags = vocabulary or read_vocabulary()
        if not 1 <= top_k <= len(self.tags):
            raise ConfigError(f"tagger top_k={top_k} must be between 1 and the {len(self.tags)} tags")
        if "{}" not in template:
            raise ConfigError(f"tagger template {template!r} has no '{{}}' for the tag")
        try:
            processor = AutoProcessor.from_pretrained(model)
            clip = AutoModel.from_pretrained(model, torch_dtype=dtype)
        except (OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"cannot load tagger model {model!r}: {reason}. Use a CLIP hub id (default {DEFAULT_TAGGER}) or "
                "a local folder with its processor; offline (HF_HUB_OFFLINE=1) it must already be in the cache"
            ) from None
        parts = ("vision_model", "visual_projection", "text_model", "text_projection")
        if not all(hasattr(clip, p) for p in parts):
            raise ModelLoadError(
                f"tagger model {model!r} is not a CLIP-style dual encoder ({type(clip).__name__})"
            )
        clip.requires_grad_(False).eval().to(device)
        self.top_k, self.device, self.dtype = top_k, torch.device(device), dtype
        with torch.no_grad():
            tokens = processor.tokenizer(
                [template.format(t) for t in self.tags], padding=True, return_tensors="pt"
            )
            text = clip.text_projection(clip.text_model(**tokens.to(self.device)).pooler_output)
        self.text_features = F.normalize(text.float(), dim=-1)
        self.vision, self.projection = clip.vision_model, clip.visual_projection
        del clip.text_model  # only the image side is needed from here on
        self._set_preprocessing(processor.image_processor)

    def _set_preprocessing(self, ip) -> None:
        size = dict(ip.size) if getattr(ip, "do_resize", True) else {}
        self.resize_short = size.get("shortest_edge")
        self.resize_to = (size["height"], size["width"]) if "height" in size else None
        crop = dict(ip.crop_size) if getattr(ip, "do_center_crop", False) else None
        self.crop = (crop["height"], crop["width"]) if crop else None
        self.mean = torch.tensor(ip.image_mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(ip.image_std, device=self.device).view(1, -1, 1, 1)

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """The image processor's resize, centre crop and normalisation, in torch on the device."""
        x = images.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        if self.resize_short:
            s = self.resize_short
            target = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
        else:
            target = self.resize_to
        if target and target != (h, w):
            x = F.interpolate(x, size=target, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        if self.crop:
            (h, w), (ch, cw) = x.shape[-2:], self.crop
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        return ((x - self.mean) / self.std).to(self.dtype)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> list[str]:
        """One prompt per image of ``images`` (B, 3, H, W) in [0, 1]: its ``top_k`` tags, best first."""
        features = self.projection(self.vision(pixel_values=self.pixel_values(images)).pooler_output)
        scores = F.normalize(features.float(), dim=-1) @ self.text_features.T
        best = scores.argsort(dim=-1, descending=True, stable=True)[:, : self.top_k].tolist()
        return [", ".join(self.tags[i] for i in row) for row in best]
