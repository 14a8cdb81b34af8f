"""Evaluation: PSNR/SSIM agree with basicsr; pairing errors; unavailable metrics do not stop the others."""

import json

import cv2
import numpy as np
import pytest
from basicsr.metrics.psnr_ssim import _ssim, calculate_psnr, calculate_ssim
from basicsr.utils.color_util import bgr2ycbcr
from PIL import Image, ImageFilter
from skimage import data

from pisasr.errors import ConfigError
from pisasr.evaluation.metrics import evaluate, match_pairs


@pytest.fixture(scope="module")
def photo_pairs(tmp_path_factory):
    """Real photos shipped with scikit-image and synthetically degraded versions (blur + JPEG)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "gt").mkdir(), (root / "sr").mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        img = Image.fromarray(getattr(data, name)()).crop((0, 0, 256, 192))
        img.save(root / "gt" / f"{name}.png")
        img.filter(ImageFilter.GaussianBlur(1.5)).save(root / "tmp.jpg", quality=40)
        Image.open(root / "tmp.jpg").save(root / "sr" / f"{name}.png")
    return root


def _rounded_y(bgr):
    """Y of YCbCr in [0, 255], rounded to integers as MATLAB (and pyiqa) do; basicsr keeps fractions."""
    return np.round(bgr2ycbcr(bgr.astype(np.float32) / 255.0, y_only=True) * 255.0).astype(np.float64)


def test_psnr_and_ssim_match_basicsr_on_the_y_channel(photo_pairs):
    result = evaluate(photo_pairs / "sr", photo_pairs / "gt", ["psnr", "ssim"], progress=False)
    for name, values in result.per_image.items():
        sr = cv2.imread(str(photo_pairs / "sr" / f"{name}.png"))
        gt = cv2.imread(str(photo_pairs / "gt" / f"{name}.png"))
        assert abs(values["psnr"] - calculate_psnr(sr, gt, crop_border=0, test_y_channel=True)) < 1e-3
        # basicsr's SSIM kernel on the same (integer) Y channel that pyiqa evaluates
        assert abs(values["ssim"] - _ssim(_rounded_y(sr), _rounded_y(gt))) < 1e-4
        # against basicsr's unrounded Y the difference stays at the rounding's size
        assert abs(values["ssim"] - calculate_ssim(sr, gt, crop_border=0, test_y_channel=True)) < 3e-3
    assert 20 < result.means["psnr"] < 40


def test_unavailable_metric_is_reported_and_the_rest_computed(photo_pairs, tmp_path, monkeypatch, capsys):
    import pisasr.evaluation.metrics as metrics
    from pisasr.cli import run_cli
    from pisasr.cli.evaluate import main

    real_create = metrics._create

    def offline(name, device):
        if name == "lpips":
            raise OSError("Name or service not known")
        return real_create(name, device)

    monkeypatch.setattr(metrics, "_create", offline)
    out = tmp_path / "results.json"
    code = run_cli(
        main,
        [
            "--sr",
            str(photo_pairs / "sr"),
            "--gt",
            str(photo_pairs / "gt"),
            "--metrics",
            "psnr",
            "lpips",
            "--out",
            str(out),
        ],
    )
    assert code == 0
    saved = json.loads(out.read_text())
    assert saved["psnr"] > 20 and saved["lpips"] is None and "place them in" in saved["_unavailable"]["lpips"]
    assert "| n/a |" in capsys.readouterr().out
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == "image,psnr"


def test_pairing_errors_list_the_names(photo_pairs, tmp_path):
    sr, gt = tmp_path / "sr", tmp_path / "gt"
    sr.mkdir(), gt.mkdir()
    Image.new("RGB", (8, 8)).save(sr / "a.png")
    Image.new("RGB", (8, 8)).save(gt / "b.png")
    with pytest.raises(ConfigError, match="no GT for a.png; no SR for b.png"):
        match_pairs(sr, gt)
    Image.new("RGB", (8, 8)).save(gt / "a.png")
    Image.new("RGB", (4, 8)).save(sr / "b.png")
    with pytest.raises(ConfigError, match=r"sizes differ .*b \(4x8 vs 8x8\)"):
        match_pairs(sr, gt)


def test_reference_metrics_need_gt(photo_pairs):
    with pytest.raises(ConfigError, match="need a GT folder"):
        evaluate(photo_pairs / "sr", None, ["psnr"])


def test_unknown_metric_name_is_an_error_naming_the_valid_ones(photo_pairs, tmp_path, capsys):
    from pisasr.cli import run_cli
    from pisasr.cli.evaluate import main

    args = [
        "--sr",
        str(photo_pairs / "sr"),
        "--gt",
        str(photo_pairs / "gt"),
        "--out",
        str(tmp_path / "r.json"),
    ]
    assert run_cli(main, [*args, "--metrics", "psnr", "psnrr"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric(s) 'psnrr' (did you mean 'psnr'?)" in err and "the paper's are psnr, ssim" in err
    assert err.count("\n") == 1 and not (tmp_path / "r.json").exists()


def test_results_go_beside_the_sr_folder_without_out(photo_pairs, tmp_path, monkeypatch):
    from pisasr.cli import run_cli
    from pisasr.cli.evaluate import main

    monkeypatch.chdir(tmp_path)
    assert (
        run_cli(main, ["--sr", str(photo_pairs / "sr"), "--gt", str(photo_pairs / "gt"), "--metrics", "psnr"])
        == 0
    )
    assert list(tmp_path.iterdir()) == []  # nothing in the current folder
    assert json.loads((photo_pairs / "sr_metrics.json").read_text())["psnr"] > 20
    assert (photo_pairs / "sr_metrics.csv").read_text().startswith("image,psnr")


def test_a_folder_written_by_infer_is_read_by_its_record(tmp_path):
    """``--suffix`` is taken off the names and the maps and sheets beside the results are no SR images."""
    sr, gt = tmp_path / "sr", tmp_path / "gt"
    sr.mkdir(), gt.mkdir()
    for folder, name in ((gt, "a.png"), (sr, "a_x4.png"), (sr, "a_x4_sweep.png")):
        Image.new("RGB", (16, 12), "gray").save(folder / name)
    Image.new("F", (2, 2)).save(sr / "a_lambda_pix.tiff")
    record = {"config": {"inference": {"suffix": "_x4"}}, "written": ["a_x4.png", "a_lambda_pix.tiff"]}
    (sr / "run.json").write_text(json.dumps({"runs": [record]}))
    assert match_pairs(sr, gt) == [("a", sr / "a_x4.png", gt / "a.png")]
