"""Official equivalence: the public path against an independent re-implementation of the official test script,
and the official training recipe's details (data, losses, prompts, configs)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from skimage import data as photos

from pisasr.config import NEGATIVE_PROMPT, SD21_BASE, load_config
from pisasr.errors import ConfigError, ModelLoadError
from pisasr.inference.pipeline import Pipeline
from pisasr.inference.tiling import needs_tiling
from pisasr.io.images import from_pil

REPO = Path(__file__).resolve().parents[1]
PHOTOS = {"astronaut": photos.astronaut, "coffee": photos.coffee, "chelsea": photos.chelsea}


def _lr_photo(name: str, size: tuple[int, int]) -> Image.Image:
    """A real photo shipped by scikit-image, shrunk to an LR input (width, height)."""
    return Image.fromarray(PHOTOS[name]()).resize(size, Image.Resampling.BICUBIC)


# -- the official test script's pre- and post-processing, written from its PIL / torchvision calls ----------------
def official_preprocess(img: Image.Image, upscale: int, process_size: int):
    width, height = img.size
    enlarged = False
    if width < process_size // upscale or height < process_size // upscale:
        scale = (process_size // upscale) / min(width, height)
        img = img.resize((int(scale * width), int(scale * height)))
        enlarged = True
    img = img.resize((img.size[0] * upscale, img.size[1] * upscale))
    img = img.resize((img.width - img.width % 8, img.height - img.height % 8), Image.LANCZOS)
    return img, enlarged


def official_adain(target: Image.Image, source: Image.Image) -> Image.Image:
    t, s = TF.to_tensor(target)[None], TF.to_tensor(source)[None]

    def mean_std(x):
        flat = x.reshape(1, 3, -1)
        return flat.mean(2).reshape(1, 3, 1, 1), (flat.var(2) + 1e-5).sqrt().reshape(1, 3, 1, 1)

    (tm, ts), (sm, ss) = mean_std(t), mean_std(s)
    return TF.to_pil_image((((t - tm) / ts) * ss + sm)[0].clamp_(0, 1))


def official_postprocess(decoded: torch.Tensor, model_input: Image.Image, enlarged, lr_size, upscale):
    out = TF.to_pil_image(torch.clip(decoded * 0.5 + 0.5, 0, 1)[0])
    out = official_adain(out, model_input)
    if enlarged:
        out = out.resize((upscale * lr_size[0], upscale * lr_size[1]))
    return TF.to_tensor(out)


def _spy(pipe, monkeypatch):
    seen = {}
    encode, decode = pipe.encode, pipe.decode
    monkeypatch.setattr(
        pipe, "encode", lambda x: seen.setdefault("input", x.clone()) is not None and encode(x)
    )
    monkeypatch.setattr(pipe, "decode", lambda z: seen.__setitem__("decoded", decode(z)) or seen["decoded"])
    return seen


@pytest.mark.parametrize(
    "photo, size, process_size",
    [("astronaut", (40, 32), 128), ("coffee", (46, 30), 256), ("chelsea", (36, 36), 512)],
)
def test_model_input_and_output_match_the_official_script(
    tiny_base, trained_checkpoint, monkeypatch, photo, size, process_size
):
    pipe = Pipeline.from_pretrained(
        tiny_base, trained_checkpoint, device="cpu", process_size=process_size, official_quantization=True
    )
    lr = _lr_photo(photo, size)
    seen = _spy(pipe, monkeypatch)
    ours = pipe.restore(from_pil(lr))[(1.0, 1.0)]

    model_input, enlarged = official_preprocess(lr, 4, process_size)
    assert enlarged == (process_size // 4 > min(size))
    expected_input = TF.to_tensor(model_input)[None] * 2 - 1
    assert seen["input"].shape == expected_input.shape
    assert (seen["input"] - expected_input).abs().max() <= 1 / 255 + 1e-6

    expected = official_postprocess(seen["decoded"], model_input, enlarged, size, 4)
    assert ours.shape == expected.shape == (3, size[1] * 4, size[0] * 4)
    assert (ours - expected).abs().max() <= 1 / 255 + 1e-6


def test_official_quantization_costs_about_half_a_grey_level(tiny_base, trained_checkpoint):
    """Truncating to 8 bits (ToPILImage) twice darkens by ~0.5 level on average; our default keeps floats."""
    lr = from_pil(_lr_photo("astronaut", (40, 32)))
    floats = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=128)
    official = Pipeline.from_pretrained(
        tiny_base, trained_checkpoint, device="cpu", process_size=128, official_quantization=True
    )
    diff = (floats.restore(lr)[(1.0, 1.0)] - official.restore(lr)[(1.0, 1.0)]) * 255
    assert 0.3 < float(diff.mean()) < 1.2 and float(diff.abs().max()) < 3


def test_sixteen_bit_and_alpha_keep_working_with_pil_resampling(pipe):
    from pisasr.io.images import LoadedImage

    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 65536, (3, 20, 24), generator=g).float() / 65535
    image = LoadedImage(rgb=rgb, alpha=torch.ones(1, 20, 24) * 0.5, grayscale=False, bit_depth=16)
    out = pipe.restore(image)[(1.0, 1.0)]
    assert out.shape == (4, 80, 96)
    assert torch.allclose(out[3], torch.full_like(out[3], 0.5), atol=1 / 65535)
    prepared = pipe.prepare(image)  # the 16-bit input is not squeezed onto the 8-bit grid
    assert ((prepared.reference * 255) - (prepared.reference * 255).round()).abs().max() > 0.01


def test_torch_resampling_stays_available(tiny_base, trained_checkpoint):
    lr = from_pil(_lr_photo("coffee", (40, 32)))
    pil = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=128)
    torch_ = Pipeline.from_pretrained(
        tiny_base, trained_checkpoint, device="cpu", process_size=128, resample="torch"
    )
    a, b = pil.prepare(lr).reference, torch_.prepare(lr).reference
    assert a.shape == b.shape and (a - b).abs().max() > 2 / 255  # a = -0.5 vs a = -0.75 differ visibly


# -- the latent tiling switch --------------------------------------------------------------------------------------
def test_tiling_switches_on_area_like_the_official():
    assert not needs_tiling(128, 64, 96)  # 1024x512 output: official does not tile
    assert needs_tiling(100, 100, 96)
    assert needs_tiling(200, 64, 96)  # official crashes here (short side < tile); we tile with 64-high tiles


def test_wide_image_under_the_tile_area_is_not_tiled(tiny_base, trained_checkpoint):
    """Latent 24x8 with tile 16: area 192 <= 256, so one pass, exactly as an untiled run."""
    from pisasr.io.images import LoadedImage

    rgb = torch.rand(3, 16, 48, generator=torch.Generator().manual_seed(1))
    image = LoadedImage(rgb=rgb, alpha=None, grayscale=False, bit_depth=8)
    options = dict(device="cpu", process_size=64, latent_tile_overlap=8)
    tiled_rule = Pipeline.from_pretrained(tiny_base, trained_checkpoint, latent_tile=16, **options)
    untiled = Pipeline.from_pretrained(tiny_base, trained_checkpoint, latent_tile=64, **options)
    out = tiled_rule.restore(image)[(1.0, 1.0)]
    assert tiled_rule.calls["unet"] == 1
    assert torch.equal(out, untiled.restore(image)[(1.0, 1.0)])


# -- base / checkpoint mismatch --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def official_pkl(tiny_base, tmp_path_factory):
    from pisasr.model import load_base
    from pisasr.testing.fixtures import add_official_adapters, official_checkpoint_dict, randomize_lora

    unet = load_base(tiny_base, text_encoder=False).unet
    groups = add_official_adapters(unet)
    randomize_lora(unet, seed=7)
    path = tmp_path_factory.mktemp("official") / "pisa_sr.pkl"
    torch.save(official_checkpoint_dict(unet, groups), path)
    return str(path)


def test_official_pkl_on_sd_turbo_is_refused_before_loading(official_pkl, tmp_path):
    missing_turbo = str(tmp_path / "sd-turbo")  # an SD-Turbo by name that is not there: refused unread
    with pytest.raises(ModelLoadError) as err:
        Pipeline.from_pretrained(missing_turbo, official_pkl, device="cpu")
    message = str(err.value)
    assert "stable-diffusion-2-1-base" in message and f"{missing_turbo!r} (SD-Turbo)" in message
    assert "configs/official_sd21.yaml" in message and "--allow_base_mismatch" in message
    with pytest.raises(ModelLoadError, match="cannot load base model"):  # the override goes on to load
        Pipeline.from_pretrained(missing_turbo, official_pkl, device="cpu", allow_base_mismatch=True)


def test_checkpoint_on_another_base_is_refused_by_fingerprint(tiny_base, tmp_path):
    from pisasr.model import DualLoRA, load_base
    from pisasr.model.checkpoint import load_checkpoint, save_checkpoint
    from pisasr.model.tiny_base import make_tiny_base

    base = load_base(tiny_base, text_encoder=False)
    save_checkpoint(
        DualLoRA(base.unet), tmp_path / "ckpt", base_model=tiny_base, base_fingerprint=base.fingerprint
    )
    assert load_checkpoint(tmp_path / "ckpt").meta.base_fingerprint == base.fingerprint
    other = str(make_tiny_base(tmp_path / "other", seed=7))
    Pipeline.from_pretrained(tiny_base, tmp_path / "ckpt", device="cpu")  # its own base: fine
    with pytest.raises(ModelLoadError, match="adapters trained on base"):
        Pipeline.from_pretrained(other, tmp_path / "ckpt", device="cpu")
    Pipeline.from_pretrained(other, tmp_path / "ckpt", device="cpu", allow_base_mismatch=True)


def test_cli_names_both_bases_and_the_config(official_pkl, tmp_path):
    image = tmp_path / "in.png"
    _lr_photo("coffee", (32, 32)).save(image)
    done = subprocess.run(
        [
            sys.executable,
            "scripts/infer.py",
            "--weights",
            official_pkl,
            "-i",
            str(image),
            "-o",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("error: ") and "configs/official_sd21.yaml" in line and "Traceback" not in done.stderr
    )


# -- training recipe ----------------------------------------------------------------------------------------------
def test_negative_prompt_is_the_official_string():
    official = (
        "painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, "
        "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, "
        "jpeg artifacts, deformed, lowres, over-smooth"
    )
    assert NEGATIVE_PROMPT == official
    assert load_config("configs/train_official_sd21.yaml").train.csd.negative_prompt == official


def _train_model(ratio=0.5, per_sample=False, suffix=""):
    from pisasr.training.model import LossWeights, PiSATrainModel

    return PiSATrainModel(
        None,
        None,
        None,
        None,
        LossWeights(),
        NEGATIVE_PROMPT,
        positive_suffix=suffix,
        null_text_ratio=ratio,
        null_text_per_sample=per_sample,
    )


def test_null_text_is_dropped_per_batch_like_the_official():
    model, g = _train_model(), torch.Generator().manual_seed(0)
    batches = [model.generator_prompts(["a, ", "b, ", "c, ", "d, "], g) for _ in range(64)]
    kinds = {tuple(p == "" for p in batch) for batch in batches}
    assert kinds == {(True,) * 4, (False,) * 4}
    per_sample, g = _train_model(per_sample=True), torch.Generator().manual_seed(0)
    mixed = [per_sample.generator_prompts(["a", "b", "c", "d"], g) for _ in range(64)]
    assert any(0 < sum(p == "" for p in batch) < 4 for batch in mixed)


def test_positive_prompt_is_caption_comma_suffix():
    assert _train_model().positive_prompt("cat, grass") == "cat, grass, "
    assert _train_model(suffix="sharp").positive_prompt("cat") == "cat, sharp"
    assert _train_model(suffix="sharp").positive_prompt("") == "sharp"


def test_prediction_is_clamped_before_l2(tiny_base):
    from pisasr.model import DualLoRA, load_base
    from pisasr.training.model import LossWeights, PiSATrainModel

    base = load_base(tiny_base)
    model = PiSATrainModel(base, DualLoRA(base.unet), None, None, LossWeights(), NEGATIVE_PROMPT)
    decode = base.vae.decode
    base.vae.decode = lambda z: type(decode(z))(sample=decode(z).sample * 0 + 3.0)  # far outside [-1, 1]
    gt = torch.zeros(1, 3, 32, 32)
    out = model.losses("pix", gt, gt, [""], torch.Generator().manual_seed(0))
    assert float(out["pred"].max()) == 1.0 and torch.isclose(out["l2"], torch.tensor(1.0))


def test_lq_goes_back_to_the_gt_size_before_rounding():
    from pisasr.data.degradation import Degrader, load_degradation, sample_kernels, training_input

    params = load_degradation("configs/degradation/realesrgan.yaml")
    rng = np.random.default_rng(0)
    kernels = {k: torch.stack([sample_kernels(params, rng)[k] for _ in range(2)]) for k in ("kernel1",)}
    rng = np.random.default_rng(0)
    samples = [sample_kernels(params, rng) for _ in range(2)]
    kernels = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    gt = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    degrader = Degrader(params)
    official = training_input(degrader, gt, kernels, torch.Generator().manual_seed(3), "random")
    again = training_input(degrader, gt, kernels, torch.Generator().manual_seed(3), "random")
    bicubic = training_input(degrader, gt, kernels, torch.Generator().manual_seed(3), "bicubic")
    assert official.shape == bicubic.shape == gt.shape and torch.equal(official, again)
    assert torch.equal(official, (official * 255).round() / 255)  # 8-bit at the GT size
    assert not torch.equal(official, bicubic)


def test_hq_prob_was_renamed_with_its_meaning(tmp_path):
    with pytest.raises(ConfigError, match="hq_sample_prob"):
        load_config(None, ["data.hq_prob=0.1"])
    cfg = load_config("configs/train_official_sd21.yaml")
    assert cfg.data.hq_sample_prob == 0.9 and cfg.data.lq_upsample == "random"
    assert cfg.model.base == SD21_BASE and not cfg.train.null_text_per_sample


def test_test_pairs_default_to_stablesr_degradation():
    from pisasr.cli.preprocess import make_test_pairs_main  # noqa: F401  (the CLI's default names the file)
    from pisasr.data.degradation import load_degradation

    stablesr = load_degradation("configs/degradation/stablesr_div2k_val.yaml")
    training = load_degradation("configs/degradation/realesrgan.yaml")
    assert stablesr.blur_sigma == [0.2, 1.5] and stablesr.betag_range2 == [0.5, 2.0] and stablesr.usm_sharpen
    assert training.blur_sigma == [0.2, 3.0] and not training.usm_sharpen
    source = (REPO / "pisasr/cli/preprocess.py").read_text()
    assert 'default="configs/degradation/stablesr_div2k_val.yaml"' in source
