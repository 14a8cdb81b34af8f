"""The reproduce path end to end on the tiny base and a synthetic test set, offline."""

import json

from conftest import image_file

from pisasr.cli import run_cli
from pisasr.cli.preprocess import make_test_pairs_main
from pisasr.cli.reproduce import main
from pisasr.reproduce import published


def test_reproduce_runs_offline_with_unavailable_learned_metrics(
    tiny_base, trained_checkpoint, tmp_path, capsys
):
    hr = tmp_path / "hr_source"
    hr.mkdir()
    for i in range(2):
        image_file(hr / f"img{i}.png", (96, 80), seed=i)
    assert (
        make_test_pairs_main([str(hr), str(tmp_path / "data" / "DIV2K-Val"), "--crop", "64", "--seed", "1"])
        == 0
    )
    other = tmp_path / "other"
    other.mkdir()
    for i in range(2):  # another method's outputs, scored into the same table
        image_file(other / f"img{i}.png", (64, 64), seed=10 + i)
    out = tmp_path / "out"
    code = run_cli(
        main,
        [
            "--data_root",
            str(tmp_path / "data"),
            "--base",
            tiny_base,
            "--weights",
            trained_checkpoint,
            "--config",
            "configs/smoke.yaml",
            "--sets",
            "DIV2K-Val",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--metrics",
            "psnr",
            "ssim",
            "lpips",
            "--extra",
            f"other={other}",
            "--lambda_grid",
            "0.5,1:0,1",
            "--grid_metrics",
            "psnr",
            "ssim",
        ],
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "| pisasr (ours) |" in printed and "| other |" in printed and "| PiSA-SR (paper) | n/a" in printed
    assert "lpips unavailable" in printed
    summary = json.loads((out / "summary.json").read_text())
    ours = summary["sets"]["DIV2K-Val"]["ours"]
    assert ours["psnr"] > 0 and ours["lpips"] is None
    assert set(summary["sets"]["DIV2K-Val"]["grid"]) == {"0.5,0", "0.5,1", "1,0", "1,1"}
    assert (out / "DIV2K-Val" / "tradeoff.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "DIV2K-Val" / "pisasr").glob("*.png")) == ["img0.png", "img1.png"]


def test_published_numbers_name_their_source():
    for method, entry in published().items():
        assert entry["source"], method
        for values in (entry.get("results") or {}).values():
            assert all(isinstance(v, (int, float)) for v in values.values())
