"""Nothing a user gives us is lost or misreported: output names and formats, the never-overwrite-an-input rule,
what ``--skip_existing`` counts as written, failed writes, and the ``run.json`` record."""

import json
import os

import cv2
import numpy as np
import pytest
from conftest import image_file
from conftest import infer_args as common
from conftest import run_infer as infer
from PIL import Image

from pisasr.errors import ConfigError


def _runs(out):
    return json.loads((out / "run.json").read_text())["runs"]


def _bytes(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_skip_existing_redoes_empty_and_cut_outputs(tiny_base, lr_dir, tmp_path, capsys, ext):
    out = tmp_path / "out"
    assert infer("-i", lr_dir, "--ext", ext, *common(tiny_base, out)) == 0
    (out / f"a.{ext}").write_bytes(b"")
    cut = (out / f"b.{ext}").read_bytes()
    (out / f"b.{ext}").write_bytes(cut[: len(cut) // 3])  # verify() passes a cut JPEG; a decode does not
    capsys.readouterr()
    assert infer("-i", lr_dir, "--ext", ext, "--skip_existing", *common(tiny_base, out)) == 0
    assert "2 restored, 0 skipped" in capsys.readouterr().err
    assert Image.open(out / f"a.{ext}").size == (96, 80) and Image.open(out / f"b.{ext}").size == (80, 112)


def test_output_that_would_overwrite_an_input_is_refused(tiny_base, lr_dir, capsys):
    before = _bytes(lr_dir)
    assert infer("-i", lr_dir, *common(tiny_base, lr_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"would overwrite the input {lr_dir / 'a.png'}" in err and "--suffix" in err
    assert _bytes(lr_dir) == before  # nothing touched
    assert infer("-i", lr_dir / "b.jpg", "--ext", "png", *common(tiny_base, lr_dir)) == 0  # b.jpg -> b.png
    assert (lr_dir / "b.jpg").read_bytes() == before["b.jpg"]


def test_the_png_written_instead_of_a_jpeg_must_not_replace_an_input(tiny_base, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    image_file(src / "logo.png", (24, 20), mode="RGBA")  # JPEG cannot hold its alpha: logo.jpg -> logo.png
    before = _bytes(src)
    assert infer("-i", src, "--ext", "jpg", *common(tiny_base, src)) == 2
    assert "would overwrite the input" in capsys.readouterr().err and _bytes(src) == before


def test_another_name_for_the_same_file_is_caught(tiny_base, lr_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    os.link(
        lr_dir / "a.png", out / "a.png"
    )  # one file, two names (as another case on a case-insensitive disk)
    before = (lr_dir / "a.png").read_bytes()
    assert infer("-i", lr_dir / "a.png", *common(tiny_base, out)) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert (lr_dir / "a.png").read_bytes() == before


def test_running_twice_in_the_input_folder_leaves_earlier_results_alone(tiny_base, lr_dir, capsys):
    args = ["-i", lr_dir, "--suffix", "_x4", *common(tiny_base, lr_dir)]
    assert infer(*args) == 0
    assert sorted(p.name for p in lr_dir.glob("*_x4.png")) == ["a_x4.png", "b_x4.png"]
    capsys.readouterr()
    assert infer(*args[:2], "--suffix", "_big", *args[4:]) == 0  # a_x4.png is not upscaled again
    err = capsys.readouterr().err
    assert "2 files in the input folder are earlier outputs" in err and "2 restored" in err
    assert sorted(p.name for p in lr_dir.glob("*_big.png")) == ["a_big.png", "b_big.png"]
    assert not list(lr_dir.glob("*_x4_big.png"))


def test_suffix_and_formats(tiny_base, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    image_file(src / "rgb.png", (24, 20))
    image_file(src / "rgba.png", (24, 20), mode="RGBA", seed=2)
    deep = np.linspace(0, 65535, 24 * 20 * 3).astype(np.uint16).reshape(20, 24, 3)
    cv2.imwrite(str(src / "deep.png"), deep)
    out = tmp_path / "out"
    assert infer("-i", src, "--suffix", "_x4", "--ext", "jpg", *common(tiny_base, out)) == 0
    assert Image.open(out / "rgb_x4.jpg").format == "JPEG"
    # JPEG has no alpha and 8 bits: those go to PNG (nothing dropped) and the summary says so
    assert Image.open(out / "rgba_x4.png").mode == "RGBA" and not (out / "rgba_x4.jpg").exists()
    assert cv2.imread(str(out / "deep_x4.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert "2 outputs hold alpha or 16 bits" in capsys.readouterr().err
    assert sorted(_runs(out)[-1]["written"]) == ["deep_x4.png", "rgb_x4.jpg", "rgba_x4.png"]
    assert (
        infer("-i", src, "--ext", "jpg", "--suffix", "_x4", "--skip_existing", *common(tiny_base, out)) == 0
    )
    assert "0 restored, 3 skipped" in capsys.readouterr().err  # the PNG fallbacks count as written
    assert infer("-i", src, "--ext", "webp", *common(tiny_base, out)) == 0
    webp = Image.open(out / "rgba.webp")
    assert webp.format == "WEBP" and webp.mode == "RGBA"  # WebP keeps alpha
    assert not (out / "deep.webp").exists() and (out / "deep.png").is_file()  # but not 16 bits


def test_switching_format_writes_the_new_format(tiny_base, lr_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer("-i", lr_dir, *common(tiny_base, out)) == 0
    capsys.readouterr()
    assert infer("-i", lr_dir, "--ext", "jpg", "--skip_existing", *common(tiny_base, out)) == 0
    assert "2 restored, 0 skipped" in capsys.readouterr().err  # an 8-bit RGB a.png is no fallback for a.jpg
    assert Image.open(out / "a.jpg").format == "JPEG"


def test_quality_sets_the_jpeg_quality(tiny_base, lr_dir, tmp_path):
    sizes = {}
    for quality in (20, 95):
        out = tmp_path / f"q{quality}"
        assert (
            infer(
                "-i",
                lr_dir / "a.png",
                "--ext",
                "jpg",
                *common(tiny_base, out, f"inference.quality={quality}"),
            )
            == 0
        )
        sizes[quality] = (out / "a.jpg").stat().st_size
    assert sizes[20] < sizes[95]


def test_sweep_names_take_suffix_and_ext(tiny_base, lr_dir, tmp_path):
    out = tmp_path / "out"
    assert (
        infer(
            "-i",
            lr_dir / "a.png",
            "--sweep",
            "1:0,1",
            "--suffix",
            "_s",
            "--ext",
            "webp",
            *common(tiny_base, out),
        )
        == 0
    )
    names = sorted(p.name for p in out.iterdir() if p.name != "run.json")
    assert names == ["a_s_pix1.0_sem0.0.webp", "a_s_pix1.0_sem1.0.webp", "a_s_sweep.png"]


def test_failed_write_is_reported_and_counted(tiny_base, lr_dir, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)  # the rename onto a folder fails: a real failed write
    assert infer("-i", lr_dir, *common(tiny_base, out)) == 1
    err = capsys.readouterr().err
    assert f"its output {out / 'a.png'} could not be written" in err
    assert "1 restored, 0 skipped (existing), 1 failed" in err and "Traceback" not in err
    assert Image.open(out / "b.png").size == (80, 112)
    run = _runs(out)[-1]
    assert run["written"] == ["b.png"] and run["status"] == "finished"
    assert len(run["failed"]) == 1 and "a.png" in run["failed"][0]


def test_record_keeps_older_and_unreadable_records(tiny_base, lr_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    old = {"command": ["infer.py", "old"], "config": {}}
    (out / "run.json").write_text(json.dumps(old))  # the format before per-run entries
    assert infer("-i", lr_dir / "a.png", *common(tiny_base, out)) == 0
    runs = _runs(out)
    assert runs[0] == old and runs[1]["written"] == ["a.png"]
    (out / "run.json").write_text("{not json")
    assert infer("-i", lr_dir / "b.jpg", *common(tiny_base, out)) == 0
    assert [p.read_text() for p in out.glob("run.json.unreadable-*")] == ["{not json"]  # kept aside
    assert [r["written"] for r in _runs(out)] == [["b.png"]]


def test_interrupted_run_is_recorded(tiny_base, lr_dir, tmp_path, monkeypatch):
    import pisasr.inference.batch

    real = pisasr.inference.batch.write_output
    calls = []

    def write_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pisasr.inference.batch, "write_output", write_then_interrupt)
    out = tmp_path / "out"
    assert infer("-i", lr_dir, "--io_workers", "0", *common(tiny_base, out)) == 130
    run = _runs(out)[-1]
    assert run["status"] == "interrupted" and run["written"] == ["a.png"]  # the image on disk has its entry


def test_duplicate_and_clashing_inputs(tiny_base, lr_dir, tmp_path, capsys):
    (lr_dir / "list.txt").write_text("a.png\n./a.png\n")
    out = tmp_path / "out"
    assert infer("-i", lr_dir / "list.txt", *common(tiny_base, out)) == 0  # the same file once
    assert "1 restored" in capsys.readouterr().err
    image_file(lr_dir / "A.webp", (24, 20))
    assert infer("-i", lr_dir, "--ext", "jpg", *common(tiny_base, tmp_path / "o2")) == 2
    err = capsys.readouterr().err
    assert "would both be written as" in err and ".jpg" in err  # a.png and A.webp clash on case-blind disks


def test_suffix_with_a_path_separator_is_refused():
    from pisasr.config import load_config

    with pytest.raises(ConfigError, match="without path separators"):
        load_config(None, ["inference.suffix=../x"])


def test_earlier_outputs_stay_out_when_writing_elsewhere(tiny_base, lr_dir, tmp_path, capsys):
    assert infer("-i", lr_dir, "--suffix", "_x4", *common(tiny_base, lr_dir)) == 0
    capsys.readouterr()
    out = tmp_path / "elsewhere"
    assert infer("-i", lr_dir, *common(tiny_base, out)) == 0  # the input folder's run.json names a_x4, b_x4
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]
    assert "2 files in the input folder are earlier outputs" in capsys.readouterr().err


def test_time_per_image_is_the_time_spent_restoring(tiny_base, lr_dir, tmp_path, monkeypatch, capsys):
    """A slow failing write (a full disk) is not restoring time: the summary's "s per image" leaves it out."""
    import re
    import time

    import pisasr.inference.batch

    real = pisasr.inference.batch.write_output

    def slow_full_disk(image, target, *args, **kwargs):
        if target.stem == "b":
            time.sleep(4)
            raise OSError(28, "No space left on device")
        return real(image, target, *args, **kwargs)

    monkeypatch.setattr(pisasr.inference.batch, "write_output", slow_full_disk)
    assert infer("-i", lr_dir, *common(tiny_base, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    seconds = float(re.search(r"1 restored, 0 skipped \(existing\), 1 failed, ([0-9.]+) s per image", err)[1])
    assert seconds < 2, err  # the whole run's time per image restored would be over 4 s


def test_counts_of_one_are_singular(tiny_base, tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    image_file(
        tmp_path / "x.png", (24, 20), mode="RGBA"
    )  # alpha: written as PNG instead of the JPEG asked for
    image_file(src / "c.png", (24, 20), seed=2)
    assert infer("-i", tmp_path / "x.png", "--ext", "jpg", *common(tiny_base, src)) == 0
    assert "note: 1 output holds alpha or 16 bits" in capsys.readouterr().err
    assert infer("-i", src, *common(tiny_base, out)) == 0  # src/x.png is that run's output
    assert (
        "note: 1 file in the input folder is an earlier output (run.json): left out"
        in capsys.readouterr().err
    )
