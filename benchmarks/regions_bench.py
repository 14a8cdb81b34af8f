"""Cost of a region-map render against a scalar render (``Pipeline.render``: recombine, decode, colour fix).

    python -m benchmarks.regions_bench --size 512 --repeats 3

The map enters only the recombination, so the UNet is irrelevant here: the pipeline is the tiny offline base
with its VAE replaced by a full-size random SD VAE (128/256/512/512, the real decoder's compute), so the decode
costs what the real one does. Also times the map alone (mask to the latent grid: area averaging, feather) at
larger output sizes, where no decode is run. Results are printed and appended as JSON lines to --log.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from benchmarks.common import append_row, machine, median_time
from pisasr.cli import quiet_libraries
from pisasr.inference.pipeline import Geometry, Pipeline
from pisasr.io.images import LoadedImage
from pisasr.regions.maps import LatentGrid, RegionMap, batch_lambdas


def full_size_vae():
    from diffusers import AutoencoderKL

    from benchmarks.make_random_base import SD_VAE_CONFIG

    torch.manual_seed(0)
    return AutoencoderKL(**SD_VAE_CONFIG).eval()


def centre_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size))
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1.0
    return mask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="output side of the render timing")
    p.add_argument("--map_sizes", default="512,2048,4096", help="output sides of the map-only timing")
    p.add_argument("--feather", type=float, default=16.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--log", default="benchmarks/results/regions.jsonl")
    args = p.parse_args()
    quiet_libraries()
    from pisasr.model.tiny_base import make_tiny_base

    base = make_tiny_base(tempfile.mkdtemp(prefix="pisasr-bench-") + "/tiny")
    pipe = Pipeline.from_pretrained(str(base), device="cpu")
    pipe.vae = pipe.base.vae = full_size_vae()
    pipe.vae.enable_tiling()
    pipe.set_vae_tile(pipe.options.vae_tile)
    lr = args.size // pipe.options.upscale
    g = torch.Generator().manual_seed(0)
    image = LoadedImage(torch.rand(3, lr, lr, generator=g), None, False, 8)
    prepared = pipe.prepare(image)
    region = RegionMap(centre_mask(args.size), (1.0, 0.5), (1.0, 1.5), feather=args.feather)
    latents = pipe.predict([prepared], [region])
    for name, spec in (("scalar (1.0, 1.5)", (1.0, 1.5)), (f"region map, feather {args.feather:g}", region)):
        seconds = median_time(lambda spec=spec: pipe.render(latents, [prepared], spec), args.repeats)
        append_row(
            args.log, {"machine": machine(), "what": f"render {args.size}px {name}", "seconds": seconds}
        )
    for size in map(int, args.map_sizes.split(",")):
        geometry = Geometry(out_size=(size, size), model_size=(size, size), pad=(0, 0))
        grid = LatentGrid.of(geometry, pipe.vae_scale)
        spec = RegionMap(centre_mask(size), (1.0, 0.5), (1.0, 1.5), feather=args.feather)
        seconds = median_time(lambda spec=spec, grid=grid: batch_lambdas([spec], [grid]), args.repeats)
        append_row(args.log, {"machine": machine(), "what": f"map alone {size}px", "seconds": seconds})


if __name__ == "__main__":
    main()
