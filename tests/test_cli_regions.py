"""scripts/infer.py with --mask / --protect: the API's region maps from files, one line per bad mask."""

import json

import numpy as np
import pytest
import torch
from conftest import image_file
from PIL import Image

from pisasr.cli import run_cli
from pisasr.cli.infer import main
from pisasr.inference.pipeline import Pipeline
from pisasr.io.images import read_image
from pisasr.regions.maps import LatentGrid, RegionMap, latent_pair, read_mask


def infer(*args):
    return run_cli(main, [str(a) for a in args])


def common(tiny_base, weights, out, *extra):
    return [
        "-o",
        out,
        "--base",
        tiny_base,
        "--weights",
        weights,
        "--device",
        "cpu",
        "--process_size",
        "64",
        *extra,
    ]


def _mask(path, size, columns):
    """White on the left ``columns`` of a ``size`` = (width, height) mask."""
    array = np.zeros(size[::-1], dtype=np.uint8)
    array[:, :columns] = 255
    Image.fromarray(array).save(path)
    return path


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "lr"
    folder.mkdir()
    image_file(folder / "a.png", (24, 20))
    image_file(folder / "b.png", (24, 20), seed=1)
    return folder


def _pixels(path):
    return np.asarray(Image.open(path))


def test_white_mask_gives_the_scalar_output(tiny_base, trained_checkpoint, inputs, tmp_path):
    white = _mask(tmp_path / "white.png", (96, 80), 96)
    scalar, region = tmp_path / "scalar", tmp_path / "region"
    args = ["-i", inputs / "a.png"]
    assert (
        infer(
            *args,
            "--lambda_pix",
            "0.5",
            "--lambda_sem",
            "1.5",
            *common(tiny_base, trained_checkpoint, scalar),
        )
        == 0
    )
    assert (
        infer(
            *args,
            "--mask",
            white,
            "--lambda_inside",
            "0.5,1.5",
            "--feather",
            "8",
            *common(tiny_base, trained_checkpoint, region),
        )
        == 0
    )
    assert np.array_equal(_pixels(scalar / "a.png"), _pixels(region / "a.png"))


def test_mask_folder_equals_the_api_and_records_the_masks(tiny_base, trained_checkpoint, inputs, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks / "a.png", (96, 80), 40)
    _mask(masks / "b.png", (24, 20), 14)  # at the input size: same aspect ratio, also fine
    out = tmp_path / "out"
    flags = ["--mask", masks, "--lambda_inside", "1.0,0.3", "--lambda_outside", "0.6,1.4", "--feather", "8"]
    assert (
        infer(
            "-i",
            inputs,
            *flags,
            "--save_masks",
            "--batch_size",
            "2",
            *common(tiny_base, trained_checkpoint, out),
        )
        == 0
    )
    pipe = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64)
    for stem in ("a", "b"):
        region = RegionMap(read_mask(masks / f"{stem}.png"), (1.0, 0.3), (0.6, 1.4), feather=8)
        image = read_image(inputs / f"{stem}.png")
        expected = (pipe.restore(image, [region])[region].permute(1, 2, 0).numpy() * 255).round()
        assert np.abs(_pixels(out / f"{stem}.png").astype(float) - expected).max() <= 1  # batched rounding
        grid = LatentGrid.of(pipe.prepare(image).geometry, pipe.vae_scale)
        for name, value in zip(("pix", "sem"), latent_pair(region, grid)):
            saved = np.asarray(Image.open(out / f"{stem}_lambda_{name}.tiff"))
            assert saved.shape == (10, 12) and np.array_equal(saved, value.numpy().astype(np.float32))
    regions = json.loads((out / "run.json").read_text())["runs"][-1]["regions"]
    assert regions["mask_files"] == {str(inputs / s): str(masks / s) for s in ("a.png", "b.png")}
    assert regions["lambda_inside"] == [1.0, 0.3] and regions["lambda_outside"] == [0.6, 1.4]


def test_bad_masks_fail_their_image_and_the_batch_goes_on(
    tiny_base, trained_checkpoint, inputs, tmp_path, capsys
):
    image_file(inputs / "c.png", (24, 20), seed=2)
    image_file(inputs / "d.png", (24, 20), seed=3)
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks / "a.png", (96, 80), 40)
    _mask(masks / "b.png", (50, 80), 20)  # another aspect ratio
    (masks / "c.png").write_text("not an image")
    out = tmp_path / "out"  # d has no mask
    code = infer(
        "-i", inputs, "--mask", masks, "--lambda_inside", "1,0.5", *common(tiny_base, trained_checkpoint, out)
    )
    err = capsys.readouterr().err
    assert code == 1 and sorted(p.name for p in out.glob("*.png")) == ["a.png"]
    assert (
        f"error: {masks / 'b.png'} (the mask of {inputs / 'b.png'}): a 50x80 mask does not have the aspect "
        "ratio of the 96x80 output" in err
    )
    assert f"error: {masks / 'c.png'}: cannot read mask" in err
    assert f"error: {inputs / 'd.png'}: no mask for it in {masks}" in err
    assert "1 restored, 0 skipped (existing), 3 failed" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mask", "MISSING", "--lambda_inside", "1,0.5"], "MISSING: mask file or folder not found"),
        (["--mask", "WHITE"], "inference.mask needs inference.lambda_inside"),
        (["--mask", "WHITE", "--lambda_inside", "1,0.5", "--sweep", "1:0,1"], "--sweep cannot be combined"),
        (["inference.protect=eyes"], "inference.protect='eyes' is not one of faces"),
        (["inference.lambda_inside=[1,2,3]"], "must be a pair"),
        (["--mask", "WHITE", "inference.lambda_inside=[.nan,1]"], "must be a pair of finite numbers"),
        (["--protect", "faces", "inference.protect_pair=[1,.inf]"], "must be a pair of finite numbers"),
    ],
)
def test_region_setup_errors_are_one_line(
    tiny_base, trained_checkpoint, inputs, tmp_path, capsys, extra, message
):
    white = _mask(tmp_path / "white.png", (96, 80), 96)
    extra = [
        str(white) if e == "WHITE" else str(tmp_path / "none.png") if e == "MISSING" else e for e in extra
    ]
    message = message.replace("MISSING", str(tmp_path / "none.png"))
    code = infer("-i", inputs, *extra, *common(tiny_base, trained_checkpoint, tmp_path / "out"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err


def test_protect_faces_without_faces_is_the_scalar_output(tiny_base, trained_checkpoint, inputs, tmp_path):
    scalar, protected = tmp_path / "scalar", tmp_path / "protected"
    args = ["-i", inputs / "a.png", "--lambda_sem", "1.5"]
    assert infer(*args, *common(tiny_base, trained_checkpoint, scalar)) == 0
    assert (
        infer(*args, "--protect", "faces", "--save_masks", *common(tiny_base, trained_checkpoint, protected))
        == 0
    )
    assert np.array_equal(_pixels(scalar / "a.png"), _pixels(protected / "a.png"))
    assert (np.asarray(Image.open(protected / "a_lambda_sem.tiff")) == 1.5).all()


def test_protect_hook_takes_a_callable():
    from pisasr.regions.detection import protect

    image = torch.rand(3, 20, 24)
    spec = protect((1.0, 1.5), image, lambda _: np.pad(np.ones((20, 12)), ((0, 0), (0, 12))), pair=(1.0, 0.2))
    assert isinstance(spec, RegionMap) and spec.inside == (1.0, 0.2) and spec.outside == (1.0, 1.5)
    assert protect((1.0, 1.5), image, lambda _: np.zeros((20, 24))) == (1.0, 1.5)  # nothing found: scalar


def test_protect_pair_is_configurable(tiny_base, trained_checkpoint, inputs, tmp_path, monkeypatch):
    import pisasr.regions.faces

    monkeypatch.setattr(
        pisasr.regions.faces, "face_mask", lambda image, **_: np.pad(np.ones((80, 40)), ((0, 0), (0, 56)))
    )
    out = tmp_path / "out"
    assert (
        infer(
            "-i",
            inputs / "a.png",
            "--protect",
            "faces",
            "--save_masks",
            "inference.protect_pair=[0.9,0.1]",
            *common(tiny_base, trained_checkpoint, out),
        )
        == 0
    )
    sem = np.asarray(Image.open(out / "a_lambda_sem.tiff"))
    assert (sem[:, :4] == np.float32(0.1)).all() and (sem[:, -4:] == 1.0).all()
    assert json.loads((out / "run.json").read_text())["runs"][-1]["regions"]["protect_pair"] == [0.9, 0.1]


def test_an_output_must_not_replace_a_mask(tiny_base, trained_checkpoint, inputs, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    _mask(masks / "a.png", (96, 80), 40)
    _mask(masks / "b.png", (96, 80), 20)
    before = {p.name: p.read_bytes() for p in masks.iterdir()}
    flags = ["--mask", masks, "--lambda_inside", "1.0,0.3"]
    assert infer("-i", inputs, *flags, *common(tiny_base, trained_checkpoint, masks)) == 2
    assert f"would overwrite the input {masks / 'a.png'}" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in masks.iterdir()} == before


def test_masks_run_only_the_passes_their_pairs_need(
    tiny_base, trained_checkpoint, inputs, tmp_path, monkeypatch
):
    """Every image renders its own map: the global --lambda_pix/--lambda_sem must not add a UNet pass."""
    from pisasr.inference.pipeline import Pipeline as P

    passes = []
    real = P.noise_prediction
    monkeypatch.setattr(
        P, "noise_prediction", lambda self, z, adapters: passes.append(adapters) or real(self, z, adapters)
    )
    white = _mask(tmp_path / "white.png", (96, 80), 96)
    # inside and outside both have pix == sem: eps_full only; the global pair (1.0, 0.5) would need eps_pix too
    flags = [
        "--mask",
        white,
        "--lambda_inside",
        "1.0,1.0",
        "--lambda_outside",
        "0.8,0.8",
        "--lambda_sem",
        "0.5",
    ]
    assert (
        infer("-i", inputs / "a.png", *flags, *common(tiny_base, trained_checkpoint, tmp_path / "out")) == 0
    )
    assert passes == ["full"]


def test_skip_existing_redoes_an_image_whose_saved_maps_are_missing(
    tiny_base, trained_checkpoint, inputs, tmp_path, capsys
):
    white = _mask(tmp_path / "white.png", (96, 80), 48)
    out = tmp_path / "out"
    flags = ["-i", inputs / "a.png", "--mask", white, "--lambda_inside", "1.0,0.3"]
    assert infer(*flags, *common(tiny_base, trained_checkpoint, out)) == 0
    capsys.readouterr()
    assert infer(*flags, "--save_masks", "--skip_existing", *common(tiny_base, trained_checkpoint, out)) == 0
    assert "1 restored, 0 skipped" in capsys.readouterr().err
    assert (out / "a_lambda_pix.tiff").is_file() and (out / "a_lambda_sem.tiff").is_file()
    assert infer(*flags, "--save_masks", "--skip_existing", *common(tiny_base, trained_checkpoint, out)) == 0
    assert "0 restored, 1 skipped" in capsys.readouterr().err


def test_protect_faces_says_how_many_faces_each_image_has(tiny_base, trained_checkpoint, tmp_path, capsys):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("astronaut.png", "coffee.png"):  # a portrait, and a cup
        (src / name).write_bytes((examples / name).read_bytes())
    assert (
        infer("-i", src, "--protect", "faces", *common(tiny_base, trained_checkpoint, tmp_path / "out")) == 0
    )
    err = capsys.readouterr().err
    import re

    assert re.search(
        rf"{re.escape(str(src / 'astronaut.png'))}: [1-9][0-9]* faces? found \(--protect faces\)", err
    )
    assert f"{src / 'coffee.png'}: no face found (--protect faces)" in err


def test_feather_wider_than_the_image_is_capped_with_one_note(
    tiny_base, trained_checkpoint, inputs, tmp_path, capsys
):
    mask = tmp_path / "mask.png"
    _mask(mask, (96, 80), 40)
    wide, capped = tmp_path / "wide", tmp_path / "capped"
    args = ["-i", inputs, "--mask", mask, "--lambda_inside", "1,0.3", "--save_masks"]
    assert infer(*args, "--feather", "1000", *common(tiny_base, trained_checkpoint, wide)) == 0
    err = capsys.readouterr().err
    assert err.count("note: --feather 1000 is wider than an output can hold: capped") == 1  # once per run
    assert infer(*args, "--feather", "40", *common(tiny_base, trained_checkpoint, capped)) == 0  # 80 / 2
    sem = np.asarray(Image.open(wide / "a_lambda_sem.tiff"))
    assert np.array_equal(sem, np.asarray(Image.open(capped / "a_lambda_sem.tiff")))
    assert sem.max() - sem.min() > 0.3  # the region is still there
