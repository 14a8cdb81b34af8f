"""Write a full-size SD-2.1-base / SD-Turbo-shaped base with random weights, plus random pix/sem adapters.

    python benchmarks/make_random_base.py .cache/random-sd21   (about 5 GB, once; git-ignored)

Same architectures as the real models (UNet 320/640/1280/1280 with head dims 5/10/20/20, cross-attention 1024
and linear projection; the SD VAE 128/256/512/512; the OpenCLIP-H text tower, 23 layers of width 1024), so
compute and memory equal the real model's: timings measured on it are real timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

# The SD VAE (shared by SD-2.1-base and SD-Turbo).
SD_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=512,
    scaling_factor=0.18215,
)


def make_random_base(out_dir: str | Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from pisasr.model.tiny_base import _byte_tokenizer_files

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
    ).save_pretrained(out / "unet")
    AutoencoderKL(**SD_VAE_CONFIG).save_pretrained(out / "vae")
    CLIPTextModel(
        CLIPTextConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_attention_heads=16,
            num_hidden_layers=23,
            vocab_size=49408,
            max_position_embeddings=77,
            projection_dim=1024,
            hidden_act="gelu",
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        )
    ).save_pretrained(out / "text_encoder")
    _byte_tokenizer_files(out / "tokenizer_src")
    CLIPTokenizer.from_pretrained(out / "tokenizer_src", model_max_length=77).save_pretrained(
        out / "tokenizer"
    )
    shutil.rmtree(out / "tokenizer_src")
    DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    ).save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return out


def make_random_adapters(base: Path, out_dir: str | Path, seed: int = 0) -> Path:
    """Rank-4 pix and sem adapters with non-zero lora_B (so adjustable mode does real work)."""
    from pisasr.model import DualLoRA, load_base
    from pisasr.model.checkpoint import save_checkpoint
    from pisasr.testing.fixtures import randomize_lora

    unet = load_base(str(base), text_encoder=False).unet
    dual = DualLoRA(unet)
    randomize_lora(unet, seed=seed, std=0.01)
    return save_checkpoint(dual, out_dir, base_model=str(base))


def make_official_pkl(base: Path, path: str | Path, seed: int = 0) -> Path:
    """The same kind of random adapters in the official ``pisa_sr.pkl`` format (six PEFT adapters), for timing
    pisasr and the official code on identical weights."""
    from pisasr.model import load_base
    from pisasr.testing.fixtures import add_official_adapters, official_checkpoint_dict, randomize_lora

    unet = load_base(str(base), text_encoder=False).unet
    groups = add_official_adapters(unet)
    randomize_lora(unet, seed=seed, std=0.01)
    torch.save(official_checkpoint_dict(unet, groups), path)
    return Path(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    base = make_random_base(args.out_dir, args.seed)
    print(make_random_adapters(base, Path(args.out_dir) / "adapters", args.seed))
    print(make_official_pkl(base, Path(args.out_dir) / "pisa_sr.pkl", args.seed))


if __name__ == "__main__":
    main()
