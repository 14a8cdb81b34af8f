"""``scripts/export.py``: every format is loaded with its consumer's own API and compared with pisasr.

Noise predictions are compared with a relative tolerance of 1e-4 of their norm: float32 merging and summation
order differ by about 1e-6, while the smallest thing an export can get wrong, the adapters' share of the noise
prediction, is over 1e-2 of it on these random adapters (asserted in ``_eps_reference``). Images are compared on
the 8-bit grid: at most 1 level off (rounding of float differences), while a wrong pair, adapter or colour fix
moves them by far more (asserted where it matters).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pisasr.cli import run_cli
from pisasr.config import load_config
from pisasr.errors import ConfigError
from pisasr.export import export
from pisasr.model import DualLoRA, load_base
from pisasr.model.checkpoint import convert_official, load_checkpoint, save_checkpoint
from pisasr.testing.fixtures import (
    add_official_adapters,
    official_checkpoint_dict,
    official_module_groups,
    randomize_lora,
)

REPO = Path(__file__).resolve().parents[1]
PARTS = ("encoder", "decoder", "others")
REL = 1e-4


def _cfg(base, weights, *overrides):
    return load_config(None, [f"model.base={base}", f"model.weights={weights}", *overrides])


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = REL) -> None:
    err = (actual - expected).norm() / expected.norm()
    assert err < rel, f"relative error {err:.2e} >= {rel:g}"


@pytest.fixture(scope="module")
def latent():
    return torch.randn(1, 4, 12, 10, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def eps_reference(pipe, latent):
    """pisasr's eps_pix and eps_full for ``latent`` (the merged inference pipeline); asserts that both adapters
    matter, which is what the tolerances are measured against."""
    eps_pix, eps_full = pipe.noise_prediction(latent, "pix"), pipe.noise_prediction(latent, "full")
    base = load_base(pipe.base.source, text_encoder=False).unet
    with torch.no_grad():
        eps_base = base(latent, 1, encoder_hidden_states=pipe.prompt_embedding("")).sample
    assert (eps_pix - eps_base).norm() / eps_pix.norm() > 1e-2
    assert (eps_full - eps_pix).norm() / eps_full.norm() > 1e-2
    return eps_pix, eps_full


def _official_load(unet, sd: dict) -> None:
    """The official ``load_ckpt_from_state_dict`` (csslc/PiSA-SR ``pisasr.py`` L233-259): six adapters with PEFT's
    default alpha on the saved module lists, then every LoRA parameter copied from ``state_dict_unet`` by name."""
    from peft import LoraConfig

    for name in ("pix", "sem"):
        for part in PARTS:
            config = LoraConfig(
                r=sd[f"lora_rank_unet_{name}"],
                init_lora_weights="gaussian",
                target_modules=sd[f"unet_lora_{part}_modules_{name}"],
            )
            unet.add_adapter(config, adapter_name=f"default_{part}_{name}")
    for n, p in unet.named_parameters():
        if "lora" in n:
            p.data.copy_(sd["state_dict_unet"][n])


def _unet_eps(unet, latent, emb):
    with torch.no_grad():
        return unet(latent, 1, encoder_hidden_states=emb).sample


# -- official ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def official_pkl(tiny_base, tmp_path_factory):
    """An official-format .pkl made the way the official code makes it (six adapters, ``save_model``)."""
    unet = load_base(tiny_base, text_encoder=False).unet
    groups = add_official_adapters(unet, rank_pix=4, rank_sem=2)
    randomize_lora(unet, seed=11)
    path = tmp_path_factory.mktemp("official") / "pisa_sr.pkl"
    torch.save(official_checkpoint_dict(unet, groups, rank_pix=4, rank_sem=2), path)
    return path


def _assert_same_official(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key != "state_dict_unet":
            assert a[key] == b[key], key
    assert a["state_dict_unet"].keys() == b["state_dict_unet"].keys()
    for key, tensor in a["state_dict_unet"].items():
        assert torch.equal(tensor, b["state_dict_unet"][key]), key


def test_official_round_trip_is_tensor_identical(tiny_base, official_pkl, tmp_path):
    original = torch.load(official_pkl, weights_only=True)
    ours = convert_official(official_pkl, tmp_path / "pisasr", base_model=tiny_base)  # .pkl -> pisasr
    export(_cfg(tiny_base, ours), "official", tmp_path / "again.pkl")  # pisasr -> .pkl
    _assert_same_official(original, torch.load(tmp_path / "again.pkl", weights_only=True))
    export(_cfg(tiny_base, official_pkl), "official", tmp_path / "direct.pkl")  # .pkl -> .pkl
    _assert_same_official(original, torch.load(tmp_path / "direct.pkl", weights_only=True))


@pytest.mark.filterwarnings("ignore:Already found a `peft_config`:UserWarning")  # several adapters: intended
def test_official_export_loaded_the_official_way_gives_pisasrs_eps(
    tiny_base, trained_checkpoint, pipe, latent, eps_reference, tmp_path
):
    export(_cfg(tiny_base, trained_checkpoint), "official", tmp_path / "pisa_sr.pkl")
    sd = torch.load(tmp_path / "pisa_sr.pkl", weights_only=True)
    unet = load_base(tiny_base, text_encoder=False).unet
    assert {p: sd[f"unet_lora_{p}_modules_pix"] for p in PARTS} == official_module_groups(unet)
    _official_load(unet, sd)
    emb = pipe.prompt_embedding("")
    unet.set_adapters([f"default_{p}_pix" for p in PARTS])
    _close(_unet_eps(unet, latent, emb), eps_reference[0])
    unet.set_adapters([f"default_{p}_{n}" for p in PARTS for n in ("pix", "sem")])
    _close(_unet_eps(unet, latent, emb), eps_reference[1])


def test_official_refuses_an_alpha_it_cannot_express(tiny_base, tmp_path):
    unet = load_base(tiny_base, text_encoder=False).unet
    save_checkpoint(DualLoRA(unet, alpha_sem=4.0), tmp_path / "ckpt", base_model=tiny_base)
    with pytest.raises(ConfigError, match="lora_alpha 4") as info:
        export(_cfg(tiny_base, tmp_path / "ckpt"), "official", tmp_path / "out.pkl")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# -- lora -------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Already found a `peft_config`:UserWarning")  # several adapters: intended
def test_lora_folders_load_with_diffusers(
    tiny_base, trained_checkpoint, pipe, latent, eps_reference, tmp_path
):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    out = export(_cfg(tiny_base, trained_checkpoint), "lora", tmp_path / "lora")
    emb = pipe.prompt_embedding("")
    unet = UNet2DConditionModel.from_pretrained(tiny_base, subfolder="unet")
    unet.load_lora_adapter(str(out / "pix"), prefix="unet", use_safetensors=True, adapter_name="pix")
    assert (
        unet.peft_config["pix"].lora_alpha == 8.0
    )  # travelled as metadata (without it diffusers takes r = 4)
    _close(_unet_eps(unet, latent, emb), eps_reference[0])
    sd = StableDiffusionPipeline.from_pretrained(tiny_base, safety_checker=None)
    sd.load_lora_weights(str(out / "pix"), adapter_name="pix")
    sd.load_lora_weights(str(out / "sem"), adapter_name="sem")
    sd.set_adapters(["pix", "sem"])
    _close(_unet_eps(sd.unet, latent, emb), eps_reference[1])
    sd.set_adapters(["pix"])
    _close(_unet_eps(sd.unet, latent, emb), eps_reference[0])


# -- diffusers --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pair, unets", [((0.7, 0.7), ["unet"]), ((0.6, 1.4), ["unet_full", "unet_pix"])])
def test_merged_unets_restore_at_the_pair(
    tiny_base, trained_checkpoint, latent, eps_reference, tmp_path, pair, unets
):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    out = export(_cfg(tiny_base, trained_checkpoint), "diffusers", tmp_path / "d", *pair)
    spec = json.loads((out / "pisasr_export.json").read_text())
    assert sorted(spec["unets"]) == unets
    emb = load_file(str(out / "prompt_embeds.safetensors"))["prompt_embeds"]
    z_hr = latent - sum(
        w * _unet_eps(UNet2DConditionModel.from_pretrained(out, subfolder=s), latent, emb)
        for s, w in spec["unets"].items()
    )
    eps_pix, eps_full = eps_reference
    expected = latent - pair[0] * eps_pix - pair[1] * (eps_full - eps_pix)
    _close(z_hr - latent, expected - latent)


def _snippet() -> str:
    text = (REPO / "docs" / "export.md").read_text()
    return re.search(r"## Restoring with diffusers alone.*?```python\n(.*?)```", text, re.S).group(1)


def _pisasr_image(tiny_base, weights, path, pair) -> np.ndarray:
    from pisasr import Pipeline
    from pisasr.io.images import read_image, to_pil

    pipe = Pipeline.from_pretrained(tiny_base, weights, device="cpu", process_size=64)
    return np.asarray(to_pil(pipe.restore(read_image(path), [pair])[pair]), np.int16)


def _image(path, size, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(size, Image.BICUBIC).save(path)
    return path


def test_docs_snippet_restores_like_pisasr(tiny_base, trained_checkpoint, tmp_path, monkeypatch):
    out = export(_cfg(tiny_base, trained_checkpoint), "diffusers", tmp_path / "d", 0.6, 1.4)
    lr = _image(tmp_path / "input.png", (21, 17), 0)  # x4 = 84 x 68: padded to 88 x 72
    monkeypatch.chdir(tmp_path)
    exec(_snippet().replace('"pisasr-diffusers"', repr(str(out))), {})
    got = np.asarray(Image.open(tmp_path / "output.png"), np.int16)
    expected = _pisasr_image(tiny_base, trained_checkpoint, lr, (0.6, 1.4))
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1
    other = _pisasr_image(tiny_base, trained_checkpoint, lr, (1.0, 1.0))
    assert np.abs(other - expected).mean() > 1  # the pair shows in the 8-bit image


# -- onnx -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_export(tiny_base, trained_checkpoint, tmp_path_factory):
    pytest.importorskip("onnx", reason="onnx not installed: pip install -e '.[export]'")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install -e '.[export]'")
    cfg = _cfg(tiny_base, trained_checkpoint, "inference.process_size=64")  # the script follows the export's
    return export(cfg, "onnx", tmp_path_factory.mktemp("onnx") / "onnx")


# Runs the example with torch and pisasr made unimportable: it must need neither.
NO_TORCH = "import runpy, sys; sys.modules['torch'] = sys.modules['pisasr'] = None; sys.argv = sys.argv[1:]; " \
    "runpy.run_path(sys.argv[0], run_name='__main__')"  # fmt: skip


@pytest.mark.parametrize("size", [(24, 20), (13, 22)])  # plain; enlarged (13 < 64 / 4) and padded
def test_onnx_restore_script_matches_pisasr(tiny_base, trained_checkpoint, onnx_export, tmp_path, size):
    lr = _image(tmp_path / "lr.png", size, seed=size[0])
    cmd = [
        sys.executable,
        "-c",
        NO_TORCH,
        str(REPO / "examples" / "onnx_restore.py"),
        str(onnx_export),
        str(lr),
    ]
    done = subprocess.run([*cmd, str(tmp_path / "sr.png"), "--lambda_pix", "0.6", "--lambda_sem", "1.4"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = np.asarray(Image.open(tmp_path / "sr.png"), np.int16)
    expected = _pisasr_image(tiny_base, trained_checkpoint, lr, (0.6, 1.4))
    assert got.shape == expected.shape == (size[1] * 4, size[0] * 4, 3)
    assert np.abs(got - expected).max() <= 1


def test_onnx_graphs_with_a_built_in_pair(tiny_base, trained_checkpoint, pipe, latent, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install -e '.[export]'")
    import onnxruntime as ort

    out = export(_cfg(tiny_base, trained_checkpoint), "onnx", tmp_path / "o", 0.8, 0.8)
    assert sorted(p.name for p in out.glob("*.onnx")) == ["unet.onnx", "vae_decoder.onnx", "vae_encoder.onnx"]
    session = ort.InferenceSession(str(out / "unet.onnx"), providers=["CPUExecutionProvider"])
    for z in (latent, latent[..., :9, :7]):  # dynamic height and width
        eps = torch.from_numpy(session.run(None, {"latent": z.numpy()})[0])
        _close(eps, 0.8 * pipe.noise_prediction(z, "full"))


# -- model cards, bad input -------------------------------------------------------------------------------------
def test_model_cards_describe_the_export(tiny_base, trained_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_checkpoint, run / "final")
    ckpt = load_checkpoint(run / "final")
    ckpt.meta.extra = {"step": 1234}
    from pisasr.model.checkpoint import write_checkpoint

    tensors = {f"{n}.{k}": v for n, st in ckpt.states.items() for k, v in st.items()}
    write_checkpoint(ckpt.meta, tensors, run / "final")
    (run / "config.yaml").write_text("train:\n  max_steps: 1234\n")
    lora = export(_cfg(tiny_base, run / "final"), "lora", tmp_path / "lora")
    merged = export(_cfg(tiny_base, run / "final"), "diffusers", tmp_path / "d", 0.6, 1.4)
    for card in (
        lora / "README.md",
        lora / "pix" / "README.md",
        lora / "sem" / "README.md",
        merged / "README.md",
    ):
        text = card.read_text()
        assert text.startswith("---\nlibrary_name: diffusers")
        for fragment in (
            tiny_base,
            "rank 4, alpha 8",
            "| training step | 1234 |",
            "max_steps: 1234",
            "## How to load",
        ):
            assert fragment in text, (card, fragment)
    assert "| (lambda_pix, lambda_sem) | (0.6, 1.4) |" in (merged / "README.md").read_text()
    assert 'load_lora_weights("../pix"' in (lora / "sem" / "README.md").read_text()
    from pisasr.io.files import current_umask

    modes = {oct(f.stat().st_mode & 0o777) for f in [*lora.rglob("*"), *merged.rglob("*")] if f.is_file()}
    assert modes == {oct(0o666 & ~current_umask())}  # as any other tool's files, not private


def _export_cli(*args) -> int:
    from pisasr.cli.export import main

    return run_cli(main, [str(a) for a in args])


def test_bad_input_is_one_line_and_writes_nothing(tiny_base, trained_checkpoint, tmp_path, capsys):
    from safetensors.torch import save_file

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "taken").mkdir()
    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))  # no pisasr metadata
    unet = load_base(tiny_base, text_encoder=False).unet
    save_checkpoint(DualLoRA(unet), tmp_path / "other", base_model=tiny_base, base_fingerprint="0" * 16)
    cases = [
        (["--to", "tflite", "-o", outputs / "x"], trained_checkpoint, "unknown export format 'tflite'"),
        (["--to", "lora", "-o", outputs / "x"], tmp_path / "plain.safetensors", "without pisasr metadata"),
        (["--to", "lora", "-o", outputs / "x"], tmp_path / "other", "trained on base"),
        (["--to", "lora", "-o", outputs / "taken"], trained_checkpoint, "exists"),
        (["--to", "official", "-o", outputs / "x.pkl", "--lambda_pix", "1"], trained_checkpoint, "both"),
    ]
    for args, weights, message in cases:
        assert _export_cli("--base", tiny_base, "--weights", weights, *args) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert sorted(p.name for p in outputs.iterdir()) == ["taken"]


def test_a_failed_export_leaves_nothing(tiny_base, trained_checkpoint, tmp_path, monkeypatch):
    import pisasr.export.to_diffusers as to_diffusers

    def fail(info, folder):
        assert (folder / "unet").is_dir() and not (tmp_path / "d").exists()  # written aside, not yet visible
        raise RuntimeError("disk full")

    monkeypatch.setattr(to_diffusers.ExportInfo, "write", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export(_cfg(tiny_base, trained_checkpoint), "diffusers", tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_export_script_runs(tiny_base, trained_checkpoint, tmp_path):
    done = subprocess.run(
        [sys.executable, "scripts/export.py", "--base", tiny_base, "--weights", trained_checkpoint,
         "--to", "official", "-o", str(tmp_path / "p.pkl")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(tmp_path / "p.pkl").meta.rank_pix == 4
