"""scripts/infer.py --protect text (and faces,text): masks at the output size, per-kind pairs, the scalar result
without text, a warning for images the detector skips, no detector chatter, one line when the extra is missing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import image_file
from PIL import Image, ImageDraw, ImageFont

from pisasr.cli import run_cli
from pisasr.cli.evaluate import main as evaluate_main
from pisasr.cli.infer import main

ROOT = Path(__file__).resolve().parents[1]


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


def _sign(path, size=(128, 96), words="EXIT 42", xy=(16, 30), font_size=22):
    image = Image.new("RGB", size, (30, 60, 140))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    draw.text(xy, words, font=font, fill="white")
    image.save(path)
    return draw.textbbox(xy, words, font=font)


def _pixels(path):
    return np.asarray(Image.open(path))


@pytest.fixture()
def plain(tmp_path):
    folder = tmp_path / "lr"
    folder.mkdir()
    return image_file(folder / "a.png", (24, 20))


def test_a_text_free_input_is_the_scalar_output_and_its_mask_is_black(
    tiny_base, trained_checkpoint, plain, tmp_path
):
    scalar, protected = tmp_path / "scalar", tmp_path / "protected"
    args = ["-i", plain, "--lambda_sem", "1.5"]
    assert infer(*args, *common(tiny_base, trained_checkpoint, scalar)) == 0
    assert (
        infer(*args, "--protect", "text", "--save_masks", *common(tiny_base, trained_checkpoint, protected))
        == 0
    )
    assert np.array_equal(_pixels(scalar / "a.png"), _pixels(protected / "a.png"))
    mask = _pixels(protected / "a_mask_text.tiff")
    assert mask.shape == (80, 96) and not mask.any()
    assert (np.asarray(Image.open(protected / "a_lambda_sem.tiff")) == 1.5).all()


def test_a_sign_gets_the_text_pair_and_its_mask_is_saved(tiny_base, trained_checkpoint, tmp_path):
    (tmp_path / "lr").mkdir()
    left, top, right, bottom = _sign(tmp_path / "lr" / "sign.png")
    out = tmp_path / "out"
    flags = ["--protect", "text", "--save_masks", "--lambda_sem", "1.5", "--feather", "8"]
    assert infer("-i", tmp_path / "lr" / "sign.png", *flags, *common(tiny_base, trained_checkpoint, out)) == 0
    mask = _pixels(out / "sign_mask_text.tiff")
    assert mask.shape == (384, 512) and mask[4 * top : 4 * bottom, 4 * left : 4 * right].min() == 255
    assert not mask[:60].any() and not mask[-60:].any()
    sem = np.asarray(Image.open(out / "sign_lambda_sem.tiff"))  # the latent grid: 8 output pixels a cell
    assert (
        sem[top // 2 + 1 : bottom // 2 - 1, left // 2 + 1 : right // 2 - 1] == 0.0
    ).all()  # text: (1.0, 0.0)
    assert (sem[:4] == 1.5).all() and (sem[-4:] == 1.5).all()
    regions = json.loads((out / "run.json").read_text())["runs"][-1]["regions"]
    assert regions["protect"] == ["text"] and regions["protect_pairs"] == {"text": [1.0, 0.0]}
    assert regions["protect_pair"] is None


def test_config_lists_both_kinds_each_with_its_pair_or_the_one_given(
    tiny_base, trained_checkpoint, plain, tmp_path, monkeypatch
):
    import pisasr.regions.faces
    import pisasr.regions.text

    monkeypatch.setattr(
        pisasr.regions.faces,
        "face_mask",
        lambda image, boxes=None: np.pad(np.ones((80, 32)), ((0, 0), (0, 64))),
    )
    monkeypatch.setattr(
        pisasr.regions.text, "text_mask", lambda image, size: np.pad(np.ones((80, 32)), ((0, 0), (64, 0)))
    )
    config = tmp_path / "protect.yaml"
    config.write_text("inference:\n  protect: [faces, text]\n  lambda_sem: 1.5\n")
    out, given = tmp_path / "out", tmp_path / "given"
    assert (
        infer("-i", plain, "--config", config, "--save_masks", *common(tiny_base, trained_checkpoint, out))
        == 0
    )
    sem = np.asarray(Image.open(out / "a_lambda_sem.tiff"))
    assert (sem[:, :3] == 0.5).all() and (sem[:, 5:7] == 1.5).all() and (sem[:, -3:] == 0.0).all()
    assert (
        _pixels(out / "a_mask_faces.tiff")[:, :32].all() and _pixels(out / "a_mask_text.tiff")[:, 64:].all()
    )
    flags = ["--protect", "faces,text", "--save_masks", "inference.protect_pair=[0.9,0.1]"]
    assert infer("-i", plain, *flags, *common(tiny_base, trained_checkpoint, given)) == 0
    sem = np.asarray(Image.open(given / "a_lambda_sem.tiff"))
    assert (sem[:, :3] == np.float32(0.1)).all() and (sem[:, -3:] == np.float32(0.1)).all()
    regions = json.loads((given / "run.json").read_text())["runs"][-1]["regions"]
    assert regions["protect_pairs"] == {"faces": [0.9, 0.1], "text": [0.9, 0.1]}


def test_an_image_the_detector_skips_is_restored_scalar_with_a_warning(
    tiny_base, trained_checkpoint, tmp_path, capsys
):
    (tmp_path / "lr").mkdir()
    tiny = image_file(tmp_path / "lr" / "thin.png", (40, 4))
    scalar, protected = tmp_path / "scalar", tmp_path / "protected"
    assert infer("-i", tiny, *common(tiny_base, trained_checkpoint, scalar)) == 0
    capsys.readouterr()
    assert infer("-i", tiny, "--protect", "text", *common(tiny_base, trained_checkpoint, protected)) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: {tiny}: 40x4 is too small for text detection" in err
        and "restored without protect=text" in err
    )
    assert "1 restored" in err and "Traceback" not in err
    assert np.array_equal(_pixels(scalar / "thin.png"), _pixels(protected / "thin.png"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["inference.protect=[faces,eyes]"], "inference.protect='eyes' is not one of faces, text"),
        (["inference.protect=3"], "inference.protect=3 is not one of faces, text"),
        (["--protect", "text", "--sweep", "1:0,1"], "--sweep cannot be combined"),
    ],
)
def test_bad_protect_values_are_one_line(
    tiny_base, trained_checkpoint, plain, tmp_path, capsys, extra, message
):
    code = infer("-i", plain, *extra, *common(tiny_base, trained_checkpoint, tmp_path / "out"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err


def test_bad_protect_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        infer("-i", "x.png", "--protect", "faces,eyes")
    assert exit_.value.code == 2
    assert (
        "argument --protect: 'eyes' is not one of faces, text (both: faces,text)" in capsys.readouterr().err
    )


def test_missing_extra_is_one_line_naming_it(
    tiny_base, trained_checkpoint, plain, tmp_path, capsys, monkeypatch
):
    import pisasr.regions.text

    pisasr.regions.text._engine.cache_clear()
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # as if not installed
    try:
        code = infer(
            "-i", plain, "--protect", "faces,text", *common(tiny_base, trained_checkpoint, tmp_path / "out")
        )
        err = capsys.readouterr().err.strip()
        assert (
            code == 2
            and err == 'error: text detection needs rapidocr and onnxruntime: pip install -e ".[text]"'
        )
        assert not (tmp_path / "out").exists()  # before any model was loaded
        code = run_cli(
            evaluate_main, ["--sr", str(plain.parent), "--gt", str(plain.parent), "--metrics", "ocr_cer"]
        )
        err = capsys.readouterr().err.strip()
        assert (
            code == 2
            and err == 'error: ocr_cer needs rapidocr, onnxruntime and rapidfuzz: pip install -e ".[text]"'
        )
    finally:
        pisasr.regions.text._engine.cache_clear()


def test_the_commands_print_no_detector_chatter(tiny_base, trained_checkpoint, tmp_path):
    """In a fresh process, as a user runs them: rapidocr's INFO lines (and its warning for a picture without
    text) must not reach the terminal."""
    (tmp_path / "lr").mkdir()
    _sign(tmp_path / "lr" / "sign.png")
    image_file(tmp_path / "lr" / "plain.png", (128, 96))
    out = tmp_path / "out"
    env_python = [sys.executable, str(ROOT / "scripts" / "infer.py")]
    run = subprocess.run(
        [
            *env_python,
            "-i",
            str(tmp_path / "lr"),
            "--protect",
            "text",
            *map(str, common(tiny_base, trained_checkpoint, out)),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert not [line for line in lines if "RapidOCR" in line or "INFO" in line or "WARNING" in line], lines
    assert "2 restored" in run.stderr
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--sr", str(tmp_path / "lr"), "--gt", str(tmp_path / "lr"),
         "--metrics", "ocr_cer", "--out", str(tmp_path / "scores.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [
        line for line in run.stderr.splitlines() if line.strip() and not line.startswith("ocr_cer:")
    ]  # bar
    assert all(line.startswith(("note: ocr_cer", "wrote ")) for line in lines), lines
