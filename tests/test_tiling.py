import pytest
import torch
import torch.nn.functional as F

from pisasr.inference.pipeline import Pipeline
from pisasr.inference.tiling import tile_starts, tiled_apply
from pisasr.io.images import LoadedImage


def test_tile_starts_cover_with_overlap():
    assert tile_starts(50, 96, 32) == [0]
    starts = tile_starts(200, 96, 32)
    assert starts[0] == 0 and starts[-1] == 200 - 96
    assert all(b - a <= 96 - 32 for a, b in zip(starts, starts[1:]))


def test_pointwise_map_is_unchanged_by_tiling():
    z = torch.randn(1, 4, 70, 45)
    out = tiled_apply(lambda t: t * 2 + 1, z, tile=24, overlap=8, batch=3)
    torch.testing.assert_close(out, z * 2 + 1)


def test_tile_batch_does_not_change_the_result():
    z = torch.randn(1, 4, 40, 40)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    with torch.no_grad():
        one = tiled_apply(conv, z, tile=16, overlap=8, batch=1)
        many = tiled_apply(conv, z, tile=16, overlap=8, batch=5)
    torch.testing.assert_close(one, many)


def test_overlap_not_below_tile_is_an_error():
    with pytest.raises(ValueError, match="smaller than the tile"):
        tiled_apply(lambda t: t, torch.zeros(1, 1, 40, 40), tile=16, overlap=16)


def _smooth_image(h, w):
    g = torch.Generator().manual_seed(0)
    rgb = F.interpolate(torch.rand(1, 3, 3, 3, generator=g), size=(h, w), mode="bicubic", align_corners=True)
    return LoadedImage(rgb=rgb[0].clamp(0, 1), alpha=None, grayscale=False, bit_depth=8)


@pytest.fixture(scope="module")
def untiled(tiny_base, trained_checkpoint):
    pipe = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=128)
    image = _smooth_image(48, 56)  # 192x224 px model input -> 24x28 latent
    return image, pipe.restore(image, [(1.0, 1.0), (0.5, 1.5)])


def test_tile_not_smaller_than_the_latent_is_exactly_untiled(tiny_base, trained_checkpoint, untiled):
    image, expected = untiled
    pipe = Pipeline.from_pretrained(
        tiny_base, trained_checkpoint, device="cpu", latent_tile=32, latent_tile_overlap=8, process_size=128
    )
    got = pipe.restore(image, list(expected))
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_overlap_and_gaussian_blending_hide_tile_borders():
    """A local map with zero padding is wrong near every tile border; overlapped blending must hide that."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Conv2d(4, 4, 3, padding=1) for _ in range(3)])
    z = F.interpolate(torch.randn(1, 4, 6, 6), size=(80, 72), mode="bicubic", align_corners=True)
    with torch.no_grad():
        exact = net(z)
        butted = tiled_apply(net, z, tile=24, overlap=0)
        blended = tiled_apply(net, z, tile=24, overlap=12)
    seam = (butted - exact).abs().max()
    assert seam > 1e-2  # the padding artefacts are real
    assert (blended - exact).abs().max() < 0.25 * seam
    assert (blended - exact).abs().mean() < 0.1 * (butted - exact).abs().mean()


def test_pipeline_tiles_unet_and_vae(tiny_base, trained_checkpoint, untiled):
    """Tiled UNet + tiled VAE run end to end; with random weights the values differ from untiled (global attention
    and GroupNorm see only the tile), so only shape and range are checked here; seams on real weights are measured
    in benchmarks."""
    image, expected = untiled
    pipe = Pipeline.from_pretrained(
        tiny_base,
        trained_checkpoint,
        device="cpu",
        latent_tile=16,
        latent_tile_overlap=8,
        tile_batch=2,
        vae_tile=128,
        process_size=128,
    )
    got = pipe.restore(image, list(expected))
    for key in expected:
        assert got[key].shape == expected[key].shape and torch.isfinite(got[key]).all()
        assert not torch.equal(got[key], expected[key])


def _vae_activity(pipe, height, width):
    """Encode and decode an image of that size through the pipeline; per VAE half: how many times it ran, the
    largest input side it saw, and the largest activation (elements) any of its layers produced: the memory a
    VAE pass needs grows with that peak."""
    seen = {"encoder": [], "decoder": []}
    peaks = {"encoder": 0, "decoder": 0}
    handles = []
    for half in seen:
        module = getattr(pipe.vae, half)
        handles.append(
            module.register_forward_pre_hook(lambda m, a, half=half: seen[half].append(a[0].shape))
        )
        for layer in module.modules():

            def record(m, a, out, half=half):
                if isinstance(out, torch.Tensor):
                    peaks[half] = max(peaks[half], out.numel())

            handles.append(layer.register_forward_hook(record))
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    try:
        pipe.decode(pipe.encode(x))
    finally:
        for handle in handles:
            handle.remove()
    return {half: (len(seen[half]), max(max(s[-2:]) for s in seen[half]), peaks[half]) for half in seen}


def test_vae_tiling_switches_on_above_vae_tile(tiny_base):
    """--vae_tile 64: a 64x64 image is one VAE pass each way; a 72x128 one (over the tile) is tiled: several
    passes, none wider than the tile (8 latent pixels for the decoder), with a peak activation at most half the
    untiled one's (memory bounded by the tile, not the image)."""
    pipe = Pipeline.from_pretrained(tiny_base, device="cpu", vae_tile=64)
    scale = pipe.vae_scale
    at_tile = _vae_activity(pipe, 64, 64)
    assert at_tile["encoder"][:2] == (1, 64) and at_tile["decoder"][:2] == (1, 64 // scale)
    tiled = _vae_activity(pipe, 72, 128)
    assert tiled["encoder"][0] > 1 and tiled["encoder"][1] <= 64
    assert tiled["decoder"][0] > 1 and tiled["decoder"][1] <= 64 // scale
    pipe.set_vae_tile(1024)
    whole = _vae_activity(pipe, 72, 128)
    assert whole["encoder"][:2] == (1, 128) and whole["decoder"][:2] == (1, 128 // scale)
    for half in ("encoder", "decoder"):
        assert tiled[half][2] <= 0.5 * whole[half][2], (half, tiled[half][2], whole[half][2])
