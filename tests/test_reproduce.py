"""The reproduce path end to end on the tiny base and a synthetic test set, offline."""

import json

import pytest
from conftest import image_file

from pisasr.cli import run_cli
from pisasr.cli.preprocess import make_test_pairs_main
from pisasr.cli.reproduce import main
from pisasr.errors import ConfigError
from pisasr.evaluation.metrics import PAPER_METRICS
from pisasr.evaluation.reproduce import PUBLISHED, comparison_rows, load_published, provenance


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
    published = tmp_path / "published.yaml"
    published.write_text(
        "methods:\n"
        "  PiSA-SR:\n"
        "    source: test numbers\n"
        "    results:\n"
        "      DIV2K-Val: {psnr: 20.5, ssim: 0.5}\n"
        "  OtherPaper:\n"
        "    source: test numbers\n"
    )
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
            "--published",
            str(published),
            "--lambda_grid",
            "0.5,1:0,1",
            "--grid_metrics",
            "psnr",
            "ssim",
        ],
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "| pisasr (ours) |" in printed and "| other |" in printed
    assert "| PiSA-SR (paper) | 20.5000 | 0.5000 | n/a |" in printed
    assert "| OtherPaper (paper) | n/a | n/a | n/a |" in printed
    assert "- PiSA-SR (paper): primary source: test numbers\n" in printed  # provenance under the table
    assert "lpips unavailable" in printed
    summary = json.loads((out / "summary.json").read_text())
    ours = summary["sets"]["DIV2K-Val"]["ours"]
    assert ours["psnr"] > 0 and ours["lpips"] is None
    difference = summary["sets"]["DIV2K-Val"]["rows"]["ours - paper"]
    assert difference["psnr"] == pytest.approx(ours["psnr"] - 20.5)
    assert difference["ssim"] == pytest.approx(ours["ssim"] - 0.5)
    assert difference["lpips"] is None
    assert set(summary["sets"]["DIV2K-Val"]["grid"]) == {"0.5,0", "0.5,1", "1,0", "1,1"}
    assert (out / "DIV2K-Val" / "tradeoff.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "DIV2K-Val" / "pisasr").glob("*.png")) == ["img0.png", "img1.png"]


def test_shipped_published_numbers_load_and_name_their_source():
    methods = load_published()
    assert list(methods) == ["PiSA-SR", "OSEDiff", "AddSR (1 step)"]
    for entry in methods.values():  # every row: its source, how directly it reports them, and the original
        assert (
            "FreqOrtho-SR" in entry["source"] and entry["kind"] == "secondary" and "arXiv" in entry["quotes"]
        )
        assert set(entry["results"]) == {"DIV2K-Val", "RealSR", "DRealSR"}
        assert all(set(row) == set(PAPER_METRICS) for row in entry["results"].values())
    assert methods["PiSA-SR"]["results"]["RealSR"] == {
        "psnr": 25.50, "ssim": 0.7417, "lpips": 0.2672, "dists": 0.2044, "fid": 124.09, "niqe": 5.50,
        "clipiqa": 0.6702, "musiq": 70.15, "maniqa-pipal": 0.6560,
    }  # fmt: skip
    assert methods["PiSA-SR"]["results"]["DIV2K-Val"]["fid"] == 25.07
    assert methods["OSEDiff"]["results"]["DRealSR"]["maniqa-pipal"] == 0.5899
    assert methods["AddSR (1 step)"]["results"]["DIV2K-Val"]["lpips"] == 0.3620
    rows = comparison_rows({"psnr": 25.0}, "RealSR", methods, {}, ["psnr"])
    assert rows["PiSA-SR (paper)"] == {"psnr": 25.50} and rows["ours - paper"]["psnr"] == pytest.approx(-0.5)


def test_provenance_lines_name_each_published_row_source():
    methods = load_published()
    lines = provenance(methods, "RealSR")
    assert len(lines) == 3 and lines[0].startswith(
        "- PiSA-SR (paper): secondary source: FreqOrtho-SR repository"
    )
    assert "quoting Sun et al." in lines[0] and lines[2].startswith("- AddSR (1 step) (paper): secondary")
    assert provenance(methods, "OtherSet") == []  # a set no row has: no provenance to print


@pytest.mark.parametrize(
    "text, problem",
    [
        ("methods: [a, b]\n", "top-level 'methods' mapping"),
        ("methods:\n  X:\n    results: {}\n", "X needs a 'source'"),
        (
            "methods:\n  X:\n    source: s\n    results: {RealSR: {LPIPS: 0.3}}\n",
            "'LPIPS' is not a pyiqa metric",
        ),
        ("methods:\n  X:\n    source: s\n    results: {RealSR: {lpips: '0,2672'}}\n", "is not a number"),
        ("methods:\n  X:\n    source: s\n    results: {RealSR: {psnr: true}}\n", "is not a number"),
        ("methods:\n  X:\n    source: s\n    results: {RealSR: 25.5}\n", "must map metric names"),
        ("methods:\n  X: {source: s\n", "not valid YAML at line"),
        (
            "methods:\n  X:\n    source: s\n    kind: tertiary\n",
            "X.kind 'tertiary' is not one of primary, secondary",
        ),
        (
            "methods:\n  X:\n    source: s\n    results: {RealSR: {ssim: 7417}}\n",
            "outside ssim's range [0, 1]",
        ),
        ("methods:\n  X:\n    source: s\n    results: {RealSR: {psnr: -2}}\n", "outside psnr's range"),
    ],
)
def test_bad_published_file_is_one_line_error_naming_it(tmp_path, text, problem):
    path = tmp_path / "numbers.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="numbers.yaml") as info:
        load_published(path)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_missing_published_file_is_reported_before_any_model_load(tmp_path, capsys):
    (tmp_path / "data" / "RealSR" / "LR").mkdir(parents=True)
    (tmp_path / "data" / "RealSR" / "HR").mkdir()
    code = run_cli(
        main,
        ["--data_root", str(tmp_path / "data"), "--sets", "RealSR", "--published", str(tmp_path / "no.yaml")],
    )
    assert code == 2
    assert f"published numbers {tmp_path / 'no.yaml'}: cannot read" in capsys.readouterr().err
    assert PUBLISHED.is_file()


def test_missing_extra_set_and_unavailable_plot_metric_do_not_stop_the_run(
    tiny_base, trained_checkpoint, tmp_path, capsys
):
    hr = tmp_path / "hr_source"
    hr.mkdir()
    image_file(hr / "img0.png", (72, 64))
    for name in ("SetA", "SetB"):
        assert (
            make_test_pairs_main([str(hr), str(tmp_path / "data" / name), "--crop", "64", "--seed", "1"]) == 0
        )
    other = tmp_path / "other"
    (other / "SetA").mkdir(parents=True)  # another method's outputs for SetA only
    image_file(other / "SetA" / "img0.png", (64, 64), seed=5)
    (tmp_path / "bad" / "SetA").mkdir(parents=True)  # outputs whose names match no GT
    image_file(tmp_path / "bad" / "SetA" / "wrong.png", (64, 64))
    out, config = tmp_path / "out", tmp_path / "small.yaml"
    config.write_text("inference:\n  process_size: 64\n")  # no enlargement of the 16x16 LR: a fast run
    args = ["--data_root", str(tmp_path / "data"), "--base", tiny_base, "--weights", trained_checkpoint,
            "--config", str(config), "--sets", "SetA,SetB", "--out", str(out), "--device", "cpu",
            "--metrics", "psnr", "--extra", f"other={other}", f"bad={tmp_path / 'bad'}", "--lambda_grid", "1:1",
            "--grid_metrics", "psnr", "lpips"]  # fmt: skip
    assert run_cli(main, args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())["sets"]
    assert summary["SetA"]["rows"]["other"]["psnr"] > 0 and summary["SetB"]["rows"]["other"]["psnr"] is None
    assert f"- other: no outputs for SetB (no {other / 'SetB'}" in printed
    assert "- bad: SetA not scored: SR " in printed and "no GT for wrong" in printed
    assert "trade-off curve not drawn: no lambda pair has both psnr and lpips (lpips unavailable:" in printed
    assert not (out / "SetA" / "tradeoff.png").exists() and "trade-off curve:" not in printed


def test_metric_typos_stop_reproduce_before_inference(tmp_path, capsys):
    (tmp_path / "data" / "RealSR" / "LR").mkdir(parents=True)
    (tmp_path / "data" / "RealSR" / "HR").mkdir()
    args = ["--data_root", str(tmp_path / "data"), "--sets", "RealSR", "--base", str(tmp_path / "no-base")]
    assert run_cli(main, [*args, "--grid_metrics", "psnr", "lpipz"]) == 2
    assert "unknown metric(s) 'lpipz' (did you mean 'lpips'?)" in capsys.readouterr().err
    assert run_cli(main, [*args, "--extra", f"x={tmp_path / 'nope'}"]) == 2
    assert f"folder {tmp_path / 'nope'} not found" in capsys.readouterr().err


def test_tradeoff_plot_writes_nothing_without_drawable_points(tmp_path):
    from pisasr.evaluation.reproduce import tradeoff_plot

    points = {(1.0, 0.0): {"psnr": 25.0, "lpips": None}, (1.0, 1.0): {"psnr": 24.0, "lpips": None}}
    assert tradeoff_plot(points, "psnr", "lpips", tmp_path / "t.png", "t") is None
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("lr, hr", [("LR", "HR"), ("test_LR", "test_HR"), ("lq", "gt")])
def test_test_set_folder_names(tmp_path, lr, hr):
    from pisasr.evaluation.reproduce import locate_set

    (tmp_path / "RealSR" / lr).mkdir(parents=True)
    (tmp_path / "RealSR" / hr).mkdir()
    assert locate_set(tmp_path, "RealSR") == (tmp_path / "RealSR" / lr, tmp_path / "RealSR" / hr)
    (tmp_path / "DRealSR" / lr).mkdir(parents=True)
    with pytest.raises(ConfigError, match="needs an LR folder"):
        locate_set(tmp_path, "DRealSR")
