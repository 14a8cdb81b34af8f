"""Region-adaptive restoration in the API: lambda maps enter only the recombination, exactly."""

import numpy as np
import pytest
import torch
from PIL import Image

from pisasr.errors import ConfigError, ImageError
from pisasr.inference.pipeline import Pipeline
from pisasr.io.images import LoadedImage
from pisasr.regions.maps import LambdaMap, LatentGrid, RegionMap, area_average, feather, latent_pair

INSIDE, OUTSIDE = (1.0, 0.3), (0.6, 1.4)


def _image(h=24, w=32, seed=0, channels=3):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(3, h, w, generator=g)
    alpha = torch.rand(1, h, w, generator=g) if channels == 4 else None
    return LoadedImage(rgb=rgb, alpha=alpha, grayscale=False, bit_depth=8)


@pytest.fixture(scope="module")
def small_pipe(tiny_base, trained_checkpoint):
    return Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64)


@pytest.fixture(scope="module")
def cached(small_pipe):
    return _latents(small_pipe, _image())


def _latents(pipe, image, pairs=(INSIDE, OUTSIDE)):
    prepared = pipe.prepare(image)
    return prepared, pipe.predict([prepared], list(pairs))


def _left(out_size, columns):
    mask = np.zeros(out_size, dtype=np.uint8)
    mask[:, :columns] = 255
    return mask


F32 = float(np.float32(1.3))  # what a float32 map (a PIL "F" image) holds


@pytest.mark.parametrize(
    ("spec", "pair"),
    [
        (lambda size: LambdaMap(np.full(size, 0.7), np.full(size, 1.3)), (0.7, 1.3)),
        (lambda size: LambdaMap(torch.full(size, 0.7, dtype=torch.float64), 1.3, feather=12), (0.7, 1.3)),
        (lambda size: LambdaMap(0.7, Image.fromarray(np.full(size, 1.3, dtype=np.float32), "F")), (0.7, F32)),
        (lambda size: RegionMap(_left(size, 44), (0.7, 1.3), (0.7, 1.3), feather=8), (0.7, 1.3)),
        (lambda size: RegionMap(np.ones(size), (0.7, 1.3), OUTSIDE, feather=8), (0.7, 1.3)),
        (lambda size: RegionMap(np.zeros(size), OUTSIDE, (0.7, 1.3)), (0.7, 1.3)),
    ],
    ids=["arrays", "tensor-feathered", "pil-float", "same-pair", "all-inside", "all-outside"],
)
def test_constant_maps_give_the_scalar_result_to_the_bit(small_pipe, cached, spec, pair):
    prepared, latents = cached
    scalar = small_pipe.render(latents, [prepared], pair)[0]
    assert torch.equal(small_pipe.render(latents, [prepared], spec((96, 128)))[0], scalar)


def test_constant_map_through_restore(small_pipe):
    image, spec = _image(), LambdaMap(np.full((96, 128), 0.7), np.full((96, 128), 1.3))
    assert torch.equal(
        small_pipe.restore(image, [spec])[spec], small_pipe.restore(image, [(0.7, 1.3)])[(0.7, 1.3)]
    )


def test_maps_as_plain_lambdas_in_the_call(small_pipe):
    image = Image.fromarray((_image().rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    region = RegionMap(_left((96, 128), 64), INSIDE, OUTSIDE)
    assert small_pipe(image, region).size == (128, 96)
    with pytest.raises(ConfigError, match="whole pair"):
        small_pipe(image, region, 1.0)


def test_aligned_hard_mask_is_the_two_scalar_latents_everywhere(small_pipe, cached):
    """A mask on latent-cell borders, no feather: z_H is zL(inside) left of the border, zL(outside) right, exactly."""
    prepared, latents = cached
    region = RegionMap(_left((96, 128), 40), INSIDE, OUTSIDE)  # 40 output px = 5 latent cells
    z = small_pipe.combine(latents, [prepared], region)
    assert torch.equal(z[..., :5], latents.combine(*INSIDE)[..., :5])
    assert torch.equal(z[..., 5:], latents.combine(*OUTSIDE)[..., 5:])


@pytest.mark.parametrize(
    ("size", "pipe_options"),
    [
        ((24, 32), {}),
        ((10, 13), {}),
        ((11, 15), {"process_size": 32}),
        ((24, 40), {"latent_tile": 16, "latent_tile_overlap": 8, "vae_tile": 64}),
    ],
    ids=["plain", "enlarged", "padded", "tiled"],
)
def test_each_region_equals_its_pair_outside_the_feather(
    tiny_base, trained_checkpoint, small_pipe, size, pipe_options
):
    pipe = small_pipe
    if pipe_options:
        pipe = Pipeline.from_pretrained(
            tiny_base, trained_checkpoint, device="cpu", **{"process_size": 64, **pipe_options}
        )
    prepared, latents = _latents(pipe, _image(*size))
    out_h, out_w = prepared.geometry.out_size
    width = 8
    region = RegionMap(_left((out_h, out_w), out_w // 2), INSIDE, OUTSIDE, feather=width)
    z = pipe.combine(latents, [prepared], region)
    grid = LatentGrid.of(prepared.geometry, pipe.vae_scale)
    border = out_w // 2 * grid.model_size[1] / out_w / grid.cell  # in latent cells
    margin = int(np.ceil(width * grid.cells_per_output_pixel)) + 1
    left, right = int(border) - margin, int(np.ceil(border)) + margin
    assert left >= 1 and right < z.shape[-1]
    assert torch.equal(z[..., :left], latents.combine(*INSIDE)[..., :left])
    assert torch.equal(z[..., right:], latents.combine(*OUTSIDE)[..., right:])
    sem = latent_pair(region, grid)[1][0]
    blended = ((sem > INSIDE[1]) & (sem < OUTSIDE[1])).sum().item()
    assert blended >= 2  # the feather blends over more than the one cell an area average can straddle


def test_feather_blends_monotonically_and_only_near_the_border():
    grid = LatentGrid(out_size=(64, 256), model_size=(64, 256), latent_size=(8, 32), cell=8)
    hard = area_average(torch.from_numpy(_left((64, 256), 128) / 255.0), grid)
    soft = feather(hard, 32, grid)  # 4 latent cells
    row = soft[0]
    assert torch.equal(row[:12], torch.ones(12)) and torch.equal(row[20:], torch.zeros(12))
    assert (row[12:20] > 0).all() and (row[12:20] < 1).all() and (row.diff() <= 0).all()


def test_maps_add_no_unet_pass(small_pipe):
    prepared = small_pipe.prepare(_image())

    def unet_calls(pairs):
        before = small_pipe.calls["unet"]
        small_pipe.predict([prepared], pairs)
        return small_pipe.calls["unet"] - before

    mask = _left((96, 128), 64)
    assert unet_calls([RegionMap(mask, INSIDE, OUTSIDE, feather=16)]) == unet_calls([INSIDE, OUTSIDE]) == 2
    assert unet_calls([RegionMap(mask, (1.0, 1.0), (0.5, 0.5))]) == 1  # pix == sem everywhere: eps_full only
    assert unet_calls([RegionMap(mask, (1.0, 0.0), (0.5, 0.0))]) == 1  # sem == 0 everywhere: eps_pix only
    assert (
        unet_calls([RegionMap(np.zeros((96, 128)), INSIDE, (1.0, 1.0))]) == 1
    )  # an empty region costs nothing
    assert unet_calls([LambdaMap(np.full((96, 128), 0.5), 0.5)]) == 1


def test_batched_maps_per_image_equal_one_at_a_time(small_pipe):
    images = [_image(seed=1), _image(seed=2)]
    specs = [
        RegionMap(_left((96, 128), 40), INSIDE, OUTSIDE, feather=8),
        RegionMap(_left((96, 128), 88), OUTSIDE, INSIDE),
    ]
    prepared = [small_pipe.prepare(image) for image in images]
    together = small_pipe.combine(small_pipe.predict(prepared, specs), prepared, specs)
    for k, (p, spec) in enumerate(zip(prepared, specs)):
        alone = small_pipe.combine(small_pipe.predict([p], [spec]), [p], spec)
        torch.testing.assert_close(
            together[k : k + 1], alone, rtol=0, atol=2e-4
        )  # batched convolutions round
    batched = small_pipe.restore_batch(images, [specs[0]])
    torch.testing.assert_close(
        batched[1][specs[0]], small_pipe.restore(images[1], [specs[0]])[specs[0]], rtol=0, atol=2e-4
    )


def test_sweep_of_maps_and_kinds_of_image(small_pipe):
    region = RegionMap(_left((96, 128), 64), INSIDE, OUTSIDE, feather=8)
    image = _image(channels=4)
    results = small_pipe.restore(image, [INSIDE, region, OUTSIDE])
    assert results[region].shape == (4, 96, 128)  # alpha kept
    assert torch.equal(results[region][3], results[INSIDE][3])
    assert not torch.equal(results[region], results[INSIDE]) and not torch.equal(
        results[region], results[OUTSIDE]
    )
    deep = LoadedImage(rgb=image.rgb, alpha=None, grayscale=False, bit_depth=16)
    assert small_pipe.restore(deep, [region])[region].shape == (3, 96, 128)  # 16-bit in: a map as any other


def test_bad_maps_are_one_line_errors(small_pipe):
    image = _image()
    with pytest.raises(
        ImageError, match=r"mask\.png: a 100x100 mask does not have the aspect ratio of the 128x96 output"
    ):
        small_pipe.restore(image, [RegionMap(np.ones((100, 100)), INSIDE, OUTSIDE, name="mask.png")])
    with pytest.raises(ConfigError, match="non-finite"):
        small_pipe.restore(image, [LambdaMap(np.full((96, 128), np.nan), 1.0)])
    with pytest.raises(ConfigError, match=r"mask values must lie in \[0, 1\]"):
        small_pipe.restore(image, [RegionMap(np.full((96, 128), 2.0), INSIDE, OUTSIDE)])
    assert small_pipe.restore(
        image, [RegionMap(np.ones((24, 32)), INSIDE, OUTSIDE)]
    )  # the input's size is fine
    sem_map = np.full((96, 128), 0.5)
    for spec in (
        LambdaMap(float("nan"), sem_map),  # a number beside a map is a lambda too
        RegionMap(np.ones((96, 128)), (float("inf"), 1.0), OUTSIDE),
    ):
        with pytest.raises(ConfigError, match="not a finite number"):
            small_pipe.restore(image, [spec])
    with pytest.raises(ConfigError, match="must hold 0 and 1 only"):
        small_pipe.restore(image, [RegionMap(np.full((96, 128), 7, np.int64), INSIDE, OUTSIDE)])


def test_integer_masks_scale_by_their_type():
    from pisasr.regions.maps import to_plane

    assert float(to_plane(np.full((2, 2), 255, np.uint8), "m").max()) == 1.0
    assert (
        float(to_plane(np.full((2, 2), 255, np.uint16), "m").max()) == 255 / 65535
    )  # dark 16-bit stays dark
    assert float(to_plane(np.ones((2, 2), np.int64), "m").max()) == 1.0  # a 0/1 mask


def test_uniform_cells_keep_their_value_exactly_after_averaging_and_feathering():
    """Fractional area weights (an enlarged input: 40 output rows over 64 model rows) and Gaussian weights do not
    sum exactly; cells whose support holds one value keep it to the bit."""
    grid = LatentGrid(out_size=(40, 52), model_size=(64, 80), latent_size=(8, 10), cell=8)
    for value in (0.1, 0.3, 0.7, 1.3):
        plane = torch.full((40, 52), value, dtype=torch.float64)
        assert (area_average(plane, grid) == value).all()
        assert (feather(area_average(plane, grid), 30, grid) == value).all()
    pix, sem = latent_pair(RegionMap(_left((40, 52), 26), (0.1, 0.3), (0.7, 1.3), feather=4), grid)
    assert (pix[:, :2] == 0.1).all() and (sem[:, :2] == 0.3).all()
    assert (pix[:, -2:] == 0.7).all() and (sem[:, -2:] == 1.3).all()


def test_padding_cells_average_the_reflected_image():
    """A 60-pixel-wide model image is reflect-padded to 64: the last latent cell holds columns 56-59 and their
    reflections 58, 57, 56, 55, as the padded image does."""
    grid = LatentGrid(out_size=(8, 60), model_size=(8, 60), latent_size=(1, 8), cell=8)
    plane = torch.zeros(8, 60, dtype=torch.float64)
    plane[:, 57] = 1.0
    assert area_average(plane, grid)[0, -1] == 2 / 8
