"""On-the-fly crop tagging cost (``data.tagger``): a CLIP ViT-L/14-sized image tower on a batch of GT crops.

    python -m benchmarks.tagger_bench --crop 512 --batch 4

Random weights with the full-size image tower (the tagger's default model), built once in
``.cache/random-clip-l14``; the time is what ``CropTagger`` adds to each training step (resize on the device,
one image pass, tag ranking). Compare with the training-step rows of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.common import append_row, machine, median_time, peak_memory_gb
from pisasr.cli import quiet_libraries


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=".cache/random-clip-l14", help="CLIP folder (made here when absent)")
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--log", default="benchmarks/results/train.jsonl")
    args = p.parse_args()
    quiet_libraries()
    from pisasr.data.tagging import CropTagger
    from pisasr.devices import resolve_device
    from pisasr.model.tiny_base import CLIP_L14_VISION, make_tiny_clip

    if not Path(args.model, "config.json").is_file():
        make_tiny_clip(args.model, vision=CLIP_L14_VISION)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    device = resolve_device(args.device)
    tagger = CropTagger(args.model, device=device, dtype=dtype)
    crops = torch.rand(args.batch, 3, args.crop, args.crop, generator=torch.Generator().manual_seed(0))
    crops = crops.to(device)
    seconds = median_time(lambda: tagger(crops), args.repeats, args.warmup)
    row = {
        "machine": machine(),
        "suite": "tagger",
        "crop": args.crop,
        "batch": args.batch,
        "dtype": args.dtype,
        "tags": len(tagger.tags),
        "seconds_per_batch": round(seconds, 3),
        "seconds_per_crop": round(seconds / args.batch, 3),
        "peak_rss_gb": round(peak_memory_gb(), 2),
    }
    append_row(args.log, row)


if __name__ == "__main__":
    main()
