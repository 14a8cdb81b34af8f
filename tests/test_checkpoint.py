"""Our safetensors format and the official .pkl import."""

import json

import pytest
import torch

from pisasr.errors import ModelLoadError
from pisasr.model import DualLoRA, load_base
from pisasr.model.checkpoint import WEIGHTS_NAME, convert_official, load_checkpoint, save_checkpoint
from pisasr.testing.fixtures import add_official_adapters, official_checkpoint_dict, randomize_lora


def _eps(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    z, emb = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return unet(z, 1, encoder_hidden_states=emb).sample


def _eps_pair(dual):
    dual.activate(["pix"])
    eps_pix = _eps(dual.unet)
    dual.activate(["pix", "sem"])
    return eps_pix, _eps(dual.unet)


def test_round_trip_is_exact(tiny_base, trained_checkpoint, tmp_path):
    ckpt = load_checkpoint(trained_checkpoint)
    assert ckpt.meta.rank_pix == 4 and ckpt.meta.alpha_sem == 8.0 and ckpt.meta.base_model == tiny_base
    dual = ckpt.build(load_base(tiny_base, text_encoder=False).unet)
    out = save_checkpoint(dual, tmp_path / "again", base_model=tiny_base)
    again = load_checkpoint(out)  # the file itself, not the folder
    for name in ("pix", "sem"):
        assert ckpt.states[name].keys() == again.states[name].keys()
        assert all(torch.equal(ckpt.states[name][k], again.states[name][k]) for k in ckpt.states[name])
    meta = json.loads((tmp_path / "again" / "pisasr_adapters.json").read_text())
    assert meta["format_version"] == 1 and meta["target_modules"] == dual.target_modules


def test_loaded_adapters_reproduce_the_saved_model(tiny_base, tmp_path):
    unet = load_base(tiny_base, text_encoder=False).unet
    dual = DualLoRA(unet, rank_pix=2, rank_sem=6, alpha_sem=3.0)
    randomize_lora(unet, seed=5)
    expected = _eps_pair(dual)
    save_checkpoint(dual, tmp_path)
    loaded = load_checkpoint(tmp_path).build(load_base(tiny_base, text_encoder=False).unet)
    assert loaded.ranks == {"pix": 2, "sem": 6} and loaded.alphas["sem"] == 3.0
    for a, b in zip(expected, _eps_pair(loaded)):
        assert torch.equal(a, b)


@pytest.fixture()
def official_pkl(tiny_base, tmp_path):
    """An official-format pisa_sr.pkl built the way the official code builds it, plus its reference eps."""
    unet = load_base(tiny_base, text_encoder=False).unet
    groups = add_official_adapters(unet)
    randomize_lora(unet, seed=7)
    unet.set_adapters([f"default_{p}_pix" for p in ("encoder", "decoder", "others")])
    eps_pix = _eps(unet)
    unet.set_adapters([f"default_{p}_{n}" for p in ("encoder", "decoder", "others") for n in ("pix", "sem")])
    eps_full = _eps(unet)
    path = tmp_path / "pisa_sr.pkl"
    torch.save(official_checkpoint_dict(unet, groups), path)
    return path, (eps_pix, eps_full)


def test_official_pkl_gives_the_official_eps(tiny_base, official_pkl):
    path, (eps_pix, eps_full) = official_pkl
    dual = load_checkpoint(path).build(load_base(tiny_base, text_encoder=False).unet)
    ours_pix, ours_full = _eps_pair(dual)
    torch.testing.assert_close(ours_pix, eps_pix, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_full, eps_full, rtol=1e-5, atol=1e-6)
    assert (eps_full - eps_pix).abs().max() > 1e-3


def test_conversion_round_trips(tiny_base, official_pkl, tmp_path):
    path, _ = official_pkl
    out = convert_official(path, tmp_path / "converted", base_model=tiny_base)
    official, converted = load_checkpoint(path), load_checkpoint(out)
    for name in ("pix", "sem"):
        assert official.states[name].keys() == converted.states[name].keys()
        assert all(
            torch.equal(official.states[name][k], converted.states[name][k]) for k in official.states[name]
        )
    assert converted.meta.target_modules == official.meta.target_modules
    assert converted.meta.source == "official:pisa_sr.pkl"


def test_convert_script_writes_our_format(official_pkl, tmp_path):
    import subprocess
    import sys

    path, _ = official_pkl
    done = subprocess.run(
        [sys.executable, "scripts/convert_official_ckpt.py", str(path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / WEIGHTS_NAME).is_file()


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        (b"", ".safetensors", "not a readable safetensors"),
        (b"garbage", ".pkl", "not a loadable official"),
        (b"garbage", ".bin", "unknown weights format"),
    ],
)
def test_bad_weights_files_are_one_line_errors(tmp_path, content, suffix, message):
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_pkl_without_the_official_keys(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pkl")
    with pytest.raises(ModelLoadError, match="lora_rank_unet_pix"):
        load_checkpoint(tmp_path / "other.pkl")


def test_missing_weights(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    with pytest.raises(ModelLoadError, match="has no pisasr_adapters.safetensors"):
        load_checkpoint(tmp_path)


def test_official_pkl_and_converted_checkpoint_give_identical_images(tiny_base, official_pkl, tmp_path):
    from pisasr.inference.pipeline import Pipeline
    from pisasr.io.images import LoadedImage

    path, _ = official_pkl
    converted = convert_official(path, tmp_path / "converted")
    image = LoadedImage(
        rgb=torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(0)),
        alpha=None,
        grayscale=False,
        bit_depth=8,
    )
    pairs = [(1.0, 1.0), (0.6, 1.4)]
    a = Pipeline.from_pretrained(tiny_base, path, device="cpu", process_size=64).restore(image, pairs)
    b = Pipeline.from_pretrained(tiny_base, converted, device="cpu", process_size=64).restore(image, pairs)
    assert all(torch.equal(a[p], b[p]) for p in pairs)
