"""What ``--protect text`` and ``ocr_cer`` cost on the CPU, beside one default restore on the full-size random base.

    python -m benchmarks.make_random_base .cache/random-sd21            # once (about 5 GB, git-ignored)
    python -m benchmarks.text_bench --base .cache/random-sd21 --sizes 512,2048 --restore_sizes 512
    python -m benchmarks.text_bench --no_restore                         # the text half only

Per output size S (the input is S/4, as with --upscale 4), on a synthetic sign with three lines of text:

- ``protect_s``: ``text_mask(input, size=output)``, what ``--protect text`` adds to one image (detection on the
  input's detection view, recognition of the boxes found, rasterising at the output size);
- ``detect_only_s``: rapidocr's detector alone on the same view (the recogniser's share is the difference);
- ``ocr_read_s``: ``read_text(output-size image)``, what ``ocr_cer`` costs per image and side (SR, then GT);
- ``restore_s``: ``Pipeline.restore`` at the default pair (1, 1), the model's cost the protection adds to.

Also times the detection of a 3840x2160 (4k) input, to show the bound: it is searched at 2048 x 1152. Results
are printed and appended as JSON lines to --log.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from benchmarks.common import append_row, machine, median_time
from pisasr.cli import quiet_libraries
from pisasr.io.images import LoadedImage

LINES = ("NORTH EXIT", "Platform 7 - 12", "Trains to the airport every 10 min")


def sign(width: int, height: int) -> Image.Image:
    """A blue card with three lines of white text filling its width, on a noisy background."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 12, (height, width, 3)) + np.array([30, 60, 140])
    image = Image.fromarray(noise.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font_size = max(8, height // 9)
    for i, words in enumerate(LINES):
        draw.text((width // 16, height // 8 + i * 2 * font_size), words, fill="white",
                  font=ImageFont.load_default(size=font_size))  # fmt: skip
    return image


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def measure(size: int, args, pipe) -> dict:
    from pisasr.regions import text

    engine = text._engine()
    lr, hr = sign(size // 4, size // 4), sign(size, size)
    lr_t, hr_t = as_tensor(lr), as_tensor(hr)
    view, _ = text.detection_view(lr_t)
    found = text.find_text(lr_t)
    row = {
        "bench": "text",
        "machine": machine(),
        "out_size": size,
        "input_size": size // 4,
        "detection_view": list(view.shape[:2]),
        "lines_found": len(found),
        "read": [line.text for line in text.reading_order(found)],
        "protect_s": round(median_time(lambda: text.text_mask(lr_t, size=(size, size)), args.repeats), 3),
        "detect_only_s": round(
            median_time(lambda: engine(view, use_det=True, use_cls=False, use_rec=False), args.repeats), 3
        ),
        "ocr_read_s": round(median_time(lambda: text.read_text(hr_t), args.repeats), 3),
    }
    if pipe is not None and str(size) in args.restore_sizes.split(","):
        image = LoadedImage(lr_t, None, False, 8)
        seconds = median_time(lambda: pipe.restore(image, [(1.0, 1.0)]), args.restore_repeats, warmup=0)
        row["restore_s"] = round(seconds, 2)
        row["protect_vs_restore"] = round(row["protect_s"] / seconds, 4)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=".cache/random-sd21")
    p.add_argument("--weights", default=None, help="default: BASE/adapters when it exists")
    p.add_argument("--sizes", default="512,2048", help="output sides")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--restore_sizes", default="512", help="output sides also restored (2048 takes long on a CPU)"
    )
    p.add_argument("--restore_repeats", type=int, default=1)
    p.add_argument("--no_restore", action="store_true", help="time the text half only")
    p.add_argument("--log", default="benchmarks/results/text.jsonl")
    args = p.parse_args()
    quiet_libraries()
    from pisasr.regions import text

    text.require()
    pipe = None
    if not args.no_restore:
        from pisasr.inference.pipeline import Pipeline

        weights = args.weights or (
            str(Path(args.base) / "adapters") if (Path(args.base) / "adapters").exists() else None
        )
        start = time.perf_counter()
        pipe = Pipeline.from_pretrained(args.base, weights, device="cpu")
        print(f"loaded {args.base} in {time.perf_counter() - start:.1f} s", flush=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        append_row(args.log, measure(size, args, pipe))
    big = torch.rand(3, 2160, 3840)
    view, _ = text.detection_view(big)
    append_row(
        args.log,
        {
            "bench": "text-4k-input",
            "machine": machine(),
            "input_size": [3840, 2160],
            "detection_view": list(view.shape[:2]),
            "find_text_s": round(median_time(lambda: text.find_text(big), 1), 3),  # detection + recognition
        },
    )


if __name__ == "__main__":
    main()
