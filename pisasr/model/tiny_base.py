"""A tiny, randomly initialised Stable Diffusion 2.x-shaped base, written offline.

Same classes and config keys as SD-Turbo / SD-2.1-base (UNet2DConditionModel with cross-attention and linear
projection, an 8x AutoencoderKL, CLIPTextModel, a byte-level CLIP BPE tokenizer, a DDPM scheduler config), only
with tiny widths, so that tests and smoke runs exercise exactly the ``from_pretrained`` code of the real model.
Deterministic by seed; the global RNG is left untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from pisasr.io.files import staged_folder

CROSS_ATTENTION_DIM = 32


def _byte_tokenizer_files(folder: Path) -> None:
    """A CLIP tokenizer with the 256 byte symbols (plain and word-final) and no merges."""
    from tokenizers.pre_tokenizers import ByteLevel

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def make_tiny_base(out_dir: str | os.PathLike, seed: int = 0, replace: bool = True) -> Path:
    """Write the tiny base to ``out_dir`` (atomically: a half-written folder is never left behind).

    ``replace=False`` keeps a complete base another process wrote there meanwhile (``staged_folder``)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(out_dir)
    with staged_folder(out, "replace" if replace else "keep", complete="unet/config.json") as tmp:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = UNet2DConditionModel(
                sample_size=32,
                in_channels=4,
                out_channels=4,
                layers_per_block=1,
                block_out_channels=(32, 64),
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=CROSS_ATTENTION_DIM,
                attention_head_dim=(2, 4),
                use_linear_projection=True,
                norm_num_groups=16,
            )
            vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(16, 16, 32, 32),
                layers_per_block=1,
                latent_channels=4,
                norm_num_groups=8,
                sample_size=256,
                scaling_factor=0.18215,
            )
            text_encoder = CLIPTextModel(
                CLIPTextConfig(
                    hidden_size=CROSS_ATTENTION_DIM,
                    intermediate_size=64,
                    num_attention_heads=4,
                    num_hidden_layers=2,
                    vocab_size=514,
                    max_position_embeddings=77,
                    projection_dim=CROSS_ATTENTION_DIM,
                    hidden_act="gelu",
                    bos_token_id=512,
                    eos_token_id=513,
                    pad_token_id=513,
                )
            )
        unet.save_pretrained(tmp / "unet")
        vae.save_pretrained(tmp / "vae")
        text_encoder.save_pretrained(tmp / "text_encoder")
        _byte_tokenizer_files(tmp / "tokenizer_src")
        tokenizer = CLIPTokenizer.from_pretrained(tmp / "tokenizer_src", model_max_length=77)
        tokenizer.save_pretrained(tmp / "tokenizer")
        shutil.rmtree(tmp / "tokenizer_src")
        DDPMScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            prediction_type="epsilon",
            clip_sample=False,
            steps_offset=1,
        ).save_pretrained(tmp / "scheduler")
        index = {
            "_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDPMScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2))
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write a tiny random SD-2.x-shaped base (offline).")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_tiny_base(args.out_dir, args.seed))


if __name__ == "__main__":
    main()


# CLIP ViT-L/14's image tower (the tagger's default), for benchmarks; the text tower stays tiny (run once).
CLIP_L14_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "image_size": 224,
    "patch_size": 14,
}


def make_tiny_clip(out_dir: str | os.PathLike, seed: int = 0, vision: dict | None = None) -> Path:
    """A tiny random CLIP (vision + text) with processor, for offline tests of zero-shot tagging.

    ``vision`` replaces the image tower's config (``CLIP_L14_VISION``: the full-size tower, for benchmarks).
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = Path(out_dir)
    vision = vision or {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    side = vision["image_size"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = CLIPConfig(
            text_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_attention_heads": 4,
                "num_hidden_layers": 2,
                "vocab_size": 514,
                "bos_token_id": 512,
                "eos_token_id": 513,
                "pad_token_id": 513,
            },
            vision_config=vision,
            projection_dim=16,
        )
        model = CLIPModel(config)
    with staged_folder(out) as tmp:
        model.save_pretrained(tmp)
        _byte_tokenizer_files(tmp / "tokenizer_src")
        tokenizer = CLIPTokenizer.from_pretrained(tmp / "tokenizer_src", model_max_length=77)
        shutil.rmtree(tmp / "tokenizer_src")
        processor = CLIPProcessor(
            image_processor=CLIPImageProcessor(
                size={"shortest_edge": side}, crop_size={"height": side, "width": side}
            ),
            tokenizer=tokenizer,
        )
        processor.save_pretrained(tmp)
    return out
