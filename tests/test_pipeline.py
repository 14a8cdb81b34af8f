"""The inference object against an independent, unmerged implementation of the method."""

import re

import pytest
import torch
import torch.nn.functional as F

from pisasr.inference.color import apply_color_fix
from pisasr.inference.pipeline import Pipeline, plan_geometry
from pisasr.inference.resize import resize_image
from pisasr.io.images import LoadedImage
from pisasr.model import load_base
from pisasr.model.base import encode_prompts
from pisasr.model.checkpoint import load_checkpoint
from pisasr.model.dual_lora import combine_eps


def _image(h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = F.interpolate(torch.rand(1, 3, 4, 5, generator=g), size=(h, w), mode="bilinear")[0]
    return LoadedImage(rgb=rgb, alpha=None, grayscale=False, bit_depth=8)


@pytest.fixture(scope="module")
def reference(tiny_base, trained_checkpoint):
    """The method written out plainly: unmerged adapters switched per pass, no tiling."""
    base = load_base(tiny_base)
    dual = load_checkpoint(trained_checkpoint).build(base.unet)
    emb = encode_prompts(base.tokenizer, base.text_encoder, [""])

    @torch.no_grad()
    def run(image, lambda_pix, lambda_sem, process_size=512, color_fix="adain"):
        x = image.rgb[None]
        enlarged, geo = plan_geometry(x.shape[-2], x.shape[-1], 4, process_size)
        if enlarged:  # resizing itself is checked against the official PIL calls in test_fidelity.py
            x = resize_image(x, enlarged, "pil", 8)
        ref = resize_image(x, geo.model_size, "pil", 8)
        inp = F.pad(ref * 2 - 1, (0, geo.pad[1], 0, geo.pad[0]), mode="reflect")
        z = base.vae.encode(inp).latent_dist.mode() * base.vae.config.scaling_factor
        dual.activate(["pix"])
        eps_pix = base.unet(z, 1, encoder_hidden_states=emb).sample
        dual.activate(["pix", "sem"])
        eps_full = base.unet(z, 1, encoder_hidden_states=emb).sample
        z_h = combine_eps(z, eps_pix, eps_full, lambda_pix, lambda_sem)
        out = base.vae.decode(z_h / base.vae.config.scaling_factor).sample[
            :, :, : geo.model_size[0], : geo.model_size[1]
        ]
        out = apply_color_fix(color_fix, ((out + 1) / 2).clamp(0, 1), ref).clamp(0, 1)
        if enlarged:
            out = resize_image(out, geo.out_size, "pil", None)
        return out.clamp(0, 1)[0]

    return run


@pytest.mark.parametrize("pair", [(1.0, 1.0), (1.0, 0.0), (0.5, 1.5), (1.3, 0.4), (0.0, 0.0)])
def test_pipeline_matches_the_plain_method(pipe, reference, pair):
    """Merged default pass, on-the-fly pix-only pass and the combination equal the unmerged two-pass method."""
    image = _image()
    ours = pipe.restore(image, [pair])[pair]
    assert ours.shape == (3, 128, 160)
    torch.testing.assert_close(ours, reference(image, *pair), rtol=0, atol=2e-4)


def test_default_single_pass_equals_the_two_pass_path(pipe):
    """(1, 1) runs one merged pass; a pair next to it forces eps_pix + eps_full: the results agree."""
    image = _image(seed=1)
    default = pipe.restore(image)[(1.0, 1.0)]
    two_pass = pipe.restore(image, [(1.0 + 1e-6, 1.0)])[(1.0 + 1e-6, 1.0)]
    torch.testing.assert_close(two_pass, default, rtol=0, atol=1e-4)


def test_lambda_sem_zero_is_the_pix_only_pass(pipe, reference):
    image = _image(seed=2)
    pix_only = pipe.restore(image, [(1.0, 0.0)])[(1.0, 0.0)]
    torch.testing.assert_close(pix_only, reference(image, 1.0, 0.0), rtol=0, atol=2e-4)
    full = pipe.restore(image, [(1.0, 1.0)])[(1.0, 1.0)]
    assert (full - pix_only).abs().max() > 1e-3  # sem matters with these weights


def test_sweep_equals_separate_runs(pipe):
    image = _image(seed=3)
    pairs = [(p, s) for p in (0.5, 1.0) for s in (0.0, 1.0, 1.5)]
    swept = pipe.restore(image, pairs)
    for pair in pairs:
        assert torch.equal(swept[pair], pipe.restore(image, [pair])[pair])


def test_same_input_gives_bit_identical_output(tiny_base, trained_checkpoint, pipe):
    image = _image(seed=4)
    first = pipe.restore(image, [(0.8, 1.2)])[(0.8, 1.2)]
    other = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu")
    assert torch.equal(first, other.restore(image, [(0.8, 1.2)])[(0.8, 1.2)])
    assert torch.equal(first, pipe.restore(image, [(0.8, 1.2)])[(0.8, 1.2)])


def test_vae_sample_is_seeded(tiny_base, trained_checkpoint):
    a = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", vae_sample=True, seed=5)
    image = _image(seed=5)
    one, two = a.restore(image)[(1.0, 1.0)], a.restore(image)[(1.0, 1.0)]
    assert torch.equal(one, two)
    a.options.seed = 6
    assert not torch.equal(one, a.restore(image)[(1.0, 1.0)])


@pytest.mark.parametrize("size", [(37, 53), (130, 129), (12, 40)])
def test_odd_sizes_give_upscale_times_the_input(pipe, size):
    out = pipe.restore(_image(*size))[(1.0, 1.0)]
    assert out.shape == (3, size[0] * 4, size[1] * 4)
    assert 0 <= out.min() and out.max() <= 1


def test_padding_reflects_instead_of_stretching():
    enlarged, geo = plan_geometry(130, 129, 4, 512)
    assert enlarged is None and geo.model_size == (520, 516) and geo.pad == (0, 4)
    enlarged, geo = plan_geometry(37, 53, 4, 512)
    assert enlarged == (128, 183) and geo.out_size == (148, 212)


def test_fp16_on_cpu_is_refused(tiny_base):
    from pisasr.errors import ConfigError

    with pytest.raises(ConfigError, match="fp16 is not supported on the CPU"):
        Pipeline.from_pretrained(tiny_base, device="cpu", dtype="fp16")


def test_bf16_runs(tiny_base, trained_checkpoint):
    pipe = Pipeline.from_pretrained(
        tiny_base, trained_checkpoint, device="cpu", dtype="bf16", process_size=64
    )
    out = pipe.restore(_image(seed=6))[(1.0, 1.0)]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_unknown_option_is_a_config_error(tiny_base):
    from pisasr.errors import ConfigError

    with pytest.raises(ConfigError, match="colour_fix"):
        Pipeline.from_pretrained(tiny_base, colour_fix="adain")


def test_call_takes_arrays_paths_and_pil_alike(pipe, tmp_path):
    """``pipe(x)`` on a uint8, uint16 or float array gives what the same picture gives from a file."""
    import cv2
    import numpy as np
    from PIL import Image

    array8 = (_image(seed=7).rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array8).save(tmp_path / "x.png")
    from_file = np.asarray(pipe(tmp_path / "x.png", 1.0, 0.5))
    assert np.array_equal(np.asarray(pipe(array8, 1.0, 0.5)), from_file)
    assert np.array_equal(np.asarray(pipe(Image.fromarray(array8), 1.0, 0.5)), from_file)
    as16 = array8.astype(np.uint16) * 257 + np.arange(40, dtype=np.uint16)[:, None]  # below 8-bit precision
    cv2.imwrite(str(tmp_path / "x16.png"), np.ascontiguousarray(as16[:, :, ::-1]))
    from_16bit_file = np.asarray(pipe(tmp_path / "x16.png", 1.0, 0.5))
    assert np.array_equal(np.asarray(pipe(as16, 1.0, 0.5)), from_16bit_file)
    as_float = as16.astype(np.float32) / 65535.0  # floats keep 16-bit precision
    assert np.array_equal(np.asarray(pipe(as_float, 1.0, 0.5)), from_16bit_file)
    gray = np.asarray(pipe(array8[:, :, 0]))
    assert gray.shape == (128, 160)


@pytest.mark.parametrize(
    "bad, message",
    [("float_range", "not [0, 1]"), ("shape", "expected HxW or HxWxC"), ("dtype", "64-bit signed integer")],
)
def test_bad_arrays_are_one_line_errors(pipe, bad, message):
    import numpy as np

    from pisasr.errors import ImageError

    array = {
        "float_range": np.full((8, 8, 3), 2.0, np.float32),
        "shape": np.zeros((8, 8, 5), np.uint8),
        "dtype": np.zeros((8, 8, 3), np.int64),
    }[bad]
    with pytest.raises(ImageError, match=re.escape(message)):
        pipe(array)


@pytest.mark.parametrize("pair", [(float("nan"), 1.0), (1.0, float("inf")), (1.0, -float("inf"))])
def test_non_finite_lambdas_are_refused_by_the_api(pipe, pair):
    from pisasr.errors import ConfigError

    with pytest.raises(ConfigError, match="not a finite number"):
        pipe(_image(seed=8).rgb.permute(1, 2, 0).numpy(), *pair)
    with pytest.raises(ConfigError, match="not a finite number"):
        pipe.restore(_image(seed=8), [pair])


def test_render_takes_a_pair_as_tuple_or_list(pipe):
    prepared = [pipe.prepare(_image(seed=9))]
    latents = pipe.predict(prepared, [(1.0, 0.5)])
    as_tuple = pipe.render(latents, prepared, (1.0, 0.5))[0]
    assert torch.equal(pipe.render(latents, prepared, [1.0, 0.5])[0], as_tuple)
    assert torch.equal(pipe.render(latents, prepared, [(1.0, 0.5)])[0], as_tuple)  # one per image
