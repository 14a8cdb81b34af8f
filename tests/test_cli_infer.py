"""scripts/infer.py: batches, bad input, resume, sweeps, records, and real processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import accelerate_launch, image_file
from conftest import infer_args as common
from conftest import run_infer as infer
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def test_batch_goes_on_past_bad_files(tiny_base, trained_checkpoint, lr_dir, tmp_path, capsys):
    (lr_dir / "c_empty.png").write_bytes(b"")
    (lr_dir / "d_text.webp").write_text("not an image")
    good = Image.open(lr_dir / "b.jpg")
    good.save(lr_dir / "e_cut.jpg")
    (lr_dir / "e_cut.jpg").write_bytes((lr_dir / "e_cut.jpg").read_bytes()[:200])
    out = tmp_path / "out"
    code = infer("-i", lr_dir, "--weights", trained_checkpoint, *common(tiny_base, out))
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]
    assert Image.open(out / "a.png").size == (96, 80)
    for name in ("c_empty.png", "d_text.webp", "e_cut.jpg"):
        assert name in err
    assert "2 restored, 0 skipped (existing), 3 failed" in err
    assert "Traceback" not in err


def test_skip_existing_and_run_record(tiny_base, trained_checkpoint, lr_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer("-i", lr_dir, "--weights", trained_checkpoint, *common(tiny_base, out)) == 0
    stamp = (out / "a.png").stat().st_mtime_ns
    record = json.loads((out / "run.json").read_text())["runs"][-1]
    assert record["written"] == ["a.png", "b.png"]
    from pisasr.model.checkpoint import file_sha256

    weights_file = Path(trained_checkpoint) / "pisasr_adapters.safetensors"
    assert record["weights_sha256"] == file_sha256(weights_file)
    assert record["config"]["inference"]["lambda_sem"] == 1.0 and "torch" in record["versions"]
    capsys.readouterr()
    assert (
        infer("-i", lr_dir, "--weights", trained_checkpoint, "--skip_existing", *common(tiny_base, out)) == 0
    )
    assert "0 restored, 2 skipped" in capsys.readouterr().err
    assert (out / "a.png").stat().st_mtime_ns == stamp
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    # the record keeps the first run's settings for the images it made; the skipping run adds its own entry
    runs = json.loads((out / "run.json").read_text())["runs"]
    assert len(runs) == 2 and runs[0] == record
    assert runs[1]["written"] == [] and runs[1]["skipped_existing"] == ["a.png", "b.png"]


@pytest.mark.parametrize("flag", [["--lambda_sem", "nan"], ["--lambda_pix", "inf"], ["--sweep", "1,nan:1"]])
def test_non_finite_lambdas_are_refused(tiny_base, lr_dir, tmp_path, capsys, flag):
    out = tmp_path / "out"
    assert infer("-i", lr_dir, *flag, *common(tiny_base, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a finite number" in err and "\n" not in err
    assert not list(out.glob("*.png"))


def test_sweep_writes_every_pair_and_a_sheet(tiny_base, trained_checkpoint, lr_dir, tmp_path):
    out = tmp_path / "sweep"
    single = tmp_path / "single"
    args = ["-i", lr_dir / "a.png", "--weights", trained_checkpoint]
    assert infer(*args, "--sweep", "0.5,1:0,1.5", *common(tiny_base, out)) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [
        "a_pix0.5_sem0.0.png",
        "a_pix0.5_sem1.5.png",
        "a_pix1.0_sem0.0.png",
        "a_pix1.0_sem1.5.png",
        "a_sweep.png",
    ]
    assert infer(*args, "--lambda_pix", "0.5", "--lambda_sem", "1.5", *common(tiny_base, single)) == 0
    assert np.array_equal(
        np.asarray(Image.open(out / "a_pix0.5_sem1.5.png")), np.asarray(Image.open(single / "a.png"))
    )
    sheet = Image.open(out / "a_sweep.png")
    assert sheet.size[0] == 2 * 256 and sheet.size[1] > 2 * 256


def test_kinds_of_image_survive_the_cli(tiny_base, tmp_path):
    src = tmp_path / "kinds"
    src.mkdir()
    image_file(src / "gray.png", (20, 16), mode="L")
    image_file(src / "rgba.png", (20, 16), mode="RGBA")
    cv2.imwrite(
        str(src / "deep.png"), np.random.default_rng(0).integers(0, 65535, (16, 20, 3), dtype=np.uint16)
    )
    out = tmp_path / "out"
    assert infer("-i", src, *common(tiny_base, out)) == 0
    assert Image.open(out / "gray.png").mode == "L"
    assert Image.open(out / "rgba.png").mode == "RGBA" and Image.open(out / "rgba.png").size == (80, 64)
    deep = cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (64, 80, 3)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_input", "input not found"),
        ("empty_folder", "holds no images"),
        ("unwritable_out", "is not writable"),
        ("missing_weights", "weights not found"),
        ("wrong_weights", "not a readable safetensors"),
        ("absent_base", "cannot load base model 'nobody/no-such-model'"),
        ("bad_override", "inference.colour"),
    ],
)
def test_setup_errors_are_one_line(tiny_base, lr_dir, tmp_path, capsys, case, message):
    out, base, extra = tmp_path / "out", tiny_base, []
    inp = lr_dir
    if case == "missing_input":
        inp = tmp_path / "nothing_here"
    elif case == "empty_folder":
        inp = tmp_path / "empty"
        inp.mkdir()
    elif case == "unwritable_out":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    elif case == "missing_weights":
        extra = ["--weights", tmp_path / "none.safetensors"]
    elif case == "wrong_weights":
        (tmp_path / "w.safetensors").write_text("junk")
        extra = ["--weights", tmp_path / "w.safetensors"]
    elif case == "absent_base":
        base = "nobody/no-such-model"
    elif case == "bad_override":
        extra = ["inference.colour=adain"]
    code = infer("-i", inp, "-o", out, "--base", base, "--device", "cpu", *extra)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and message in err and "\n" not in err


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _umask_022():
    os.umask(0o022)


def test_real_process_error_has_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "scripts/infer.py", "-i", str(tmp_path / "missing.png"), "-o", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: input not found: {tmp_path / 'missing.png'}"]


@pytest.mark.slow
def test_two_processes_split_the_inputs(tiny_base, trained_checkpoint, tmp_path):
    src = tmp_path / "lr"
    src.mkdir()
    for i in range(5):
        image_file(src / f"img{i}.png", (16, 20), seed=i)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *accelerate_launch(2, 29517),
            "scripts/infer.py",
            "-i",
            str(src),
            "--weights",
            trained_checkpoint,
            *map(str, common(tiny_base, out)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=_env(),
        preexec_fn=_umask_022,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.png")) == [f"img{i}.png" for i in range(5)]
    assert (
        "5 restored, 0 skipped (existing), 0 failed" in done.stderr
    )  # each written once, not once per process
    record = json.loads((out / "run.json").read_text())["runs"][-1]
    assert record["num_processes"] == 2 and record["written"] == [f"img{i}.png" for i in range(5)]
    assert "terminate called" not in done.stderr  # both processes exit in order
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes.values()) == {0o644}, modes  # the umask's mode (022 here), not mkstemp's 0600


def test_list_paths_are_relative_to_the_list(tiny_base, lr_dir, tmp_path, capsys):
    (lr_dir / "list.txt").write_text("a.png\n# not this one\n\nb.jpg\n")
    assert Path.cwd() != lr_dir
    out = tmp_path / "out"
    assert infer("-i", lr_dir / "list.txt", *common(tiny_base, out)) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]


def test_options_given_zero_reach_the_run_and_its_record(tiny_base, lr_dir, tmp_path, monkeypatch):
    """0 is a value, not "not given": each flag set to 0 replaces the config's non-zero value in the pipeline
    that runs, in what run_batch gets, and in run.json (an ``if value:`` in place of ``is not None`` drops them)."""
    import pisasr.inference.batch as batch
    from pisasr.inference.pipeline import Pipeline

    config = tmp_path / "c.yaml"
    config.write_text(
        "inference: {lambda_pix: 0.6, lambda_sem: 0.7, seed: 7, latent_tile_overlap: 16, io_workers: 3, "
        "feather: 2.0, vae_sample: true}\n"
    )
    zeros = {"lambda_pix": 0.0, "lambda_sem": 0.0, "seed": 0, "latent_tile_overlap": 0, "io_workers": 0}
    zeros["feather"] = 0.0
    seen = {}
    from_config, run_batch = Pipeline.from_config.__func__, batch.run_batch
    monkeypatch.setattr(
        Pipeline, "from_config", classmethod(lambda cls, cfg: seen.setdefault("pipe", from_config(cls, cfg)))
    )
    monkeypatch.setattr(
        batch, "run_batch", lambda *a, **k: (seen.update(pairs=a[3], kwargs=k), run_batch(*a, **k))[1]
    )
    out = tmp_path / "out"
    flags = [str(x) for flag, value in zeros.items() for x in (f"--{flag}", value)]
    assert infer("-i", lr_dir, "--config", config, *flags, *common(tiny_base, out)) == 0
    options = seen["pipe"].options
    for key, value in zeros.items():
        assert getattr(options, key) == value, f"--{key} 0 did not reach the pipeline"
    assert options.vae_sample is True  # the config's other values stay
    assert seen["pairs"] == [(0.0, 0.0)] and seen["kwargs"]["io_workers"] == 0
    record = json.loads((out / "run.json").read_text())["runs"][-1]["config"]["inference"]
    assert {key: record[key] for key in zeros} == zeros
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]


def test_two_decimal_lambdas_name_and_label_their_outputs(tiny_base, lr_dir, tmp_path, monkeypatch):
    """0.25 and 0.2 are different outputs (one-decimal rounding would write both to one file) and 1.75 is not
    1.8: file names, the contact sheet's labels, and the image is the one the same pair gives alone."""
    from PIL import ImageDraw

    labels = []
    draw_text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(
        ImageDraw.ImageDraw,
        "text",
        lambda d, xy, text, *a, **k: (labels.append(text), draw_text(d, xy, text, *a, **k))[1],
    )
    out, single = tmp_path / "sweep", tmp_path / "single"
    assert infer("-i", lr_dir / "a.png", "--sweep", "0.2,0.25:1.75", *common(tiny_base, out)) == 0
    names = {p.name for p in out.glob("*.png")}
    assert names == {"a_pix0.2_sem1.75.png", "a_pix0.25_sem1.75.png", "a_sweep.png"}
    assert labels == ["pix 0.2  sem 1.75", "pix 0.25  sem 1.75"]
    assert (
        infer(
            "-i", lr_dir / "a.png", "--lambda_pix", "0.25", "--lambda_sem", "1.75", *common(tiny_base, single)
        )
        == 0
    )
    same = np.asarray(Image.open(out / "a_pix0.25_sem1.75.png")), np.asarray(Image.open(single / "a.png"))
    assert np.array_equal(*same)
    assert not np.array_equal(np.asarray(Image.open(out / "a_pix0.2_sem1.75.png")), same[0])
