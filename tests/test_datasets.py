import json
import shutil

import pytest
import torch
from conftest import image_file

from pisasr.data.datasets import GTDataset, PairedDataset, gt_files_from_config, read_file_list, read_prompts
from pisasr.data.degradation import load_degradation
from pisasr.errors import ConfigError

PARAMS = load_degradation("configs/degradation/realesrgan.yaml")


@pytest.fixture()
def gt_dir(tmp_path):
    folder = tmp_path / "gt"
    folder.mkdir()
    for i in range(4):
        image_file(folder / f"img{i}.png", (80, 72), seed=i)
    return folder


def test_list_with_missing_files_names_them(tmp_path, gt_dir):
    listing = tmp_path / "train.txt"
    listing.write_text(f"{gt_dir / 'img0.png'}\nnope1.png\nnope2.png\n")
    with pytest.raises(ConfigError, match=r"2 listed file\(s\) do not exist, e\.g\. .*nope1\.png"):
        read_file_list(listing)


def test_samples_are_deterministic_and_shaped(gt_dir):
    ds = GTDataset(gt_files_from_config([], [str(gt_dir)]), PARAMS, crop_size=64, seed=3)
    a, b = ds[1], ds[1]
    assert a["gt"].shape == (3, 64, 64) and a["kernel1"].shape == (21, 21)
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["sinc_kernel"], b["sinc_kernel"])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["kernel1"], a["kernel1"]) or not torch.equal(ds[1]["gt"], a["gt"])


def test_corrupt_and_small_files_are_skipped_and_counted(gt_dir):
    (gt_dir / "broken.png").write_bytes(b"\x89PNG broken")
    image_file(gt_dir / "tiny.png", (30, 30))
    files = sorted(gt_dir.iterdir())
    ds = GTDataset(files, PARAMS, crop_size=64)
    broken, tiny = files.index(gt_dir / "broken.png"), files.index(gt_dir / "tiny.png")
    assert ds[broken]["skipped"] >= 1 and ds[tiny]["skipped"] >= 1
    assert ds[broken]["gt"].shape == (3, 64, 64)
    upscaling = GTDataset(files, PARAMS, crop_size=64, small_images="upscale")
    assert upscaling[tiny]["skipped"] == 0 and upscaling[tiny]["gt"].shape == (3, 64, 64)


def test_prompts_and_hq_mixing(tmp_path, gt_dir):
    hq = tmp_path / "hq"
    hq.mkdir()
    image_file(hq / "best.png", (70, 70))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"path": str(hq / "best.png"), "prompt": "a sharp photo"}) + "\n")
    ds = GTDataset(
        sorted(gt_dir.iterdir()),
        PARAMS,
        crop_size=64,
        hq_files=[hq / "best.png"],
        hq_sample_prob=1.0,
        prompts=read_prompts(prompts),
    )
    assert all(ds[i]["prompt"] == "a sharp photo" for i in range(len(ds)))
    plain = GTDataset(sorted(gt_dir.iterdir()), PARAMS, crop_size=64, prompts=read_prompts(prompts))
    assert plain[0]["prompt"] == ""


def test_bad_prompts_file(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"path": "a.png"}\n')
    with pytest.raises(ConfigError, match="p.jsonl:1"):
        read_prompts(bad)


def test_paired_dataset_matches_names(tmp_path):
    lr, hr = tmp_path / "lr", tmp_path / "hr"
    lr.mkdir(), hr.mkdir()
    for name in ("a", "b"):
        image_file(lr / f"{name}.png", (8, 8))
        image_file(hr / f"{name}.png", (32, 32))
    ds = PairedDataset(lr, hr)
    assert len(ds) == 2 and ds[0]["name"] == "a" and ds[0]["hr"].shape == (3, 32, 32)
    image_file(lr / "c.png", (8, 8))
    image_file(hr / "d.png", (32, 32))
    with pytest.raises(ConfigError, match="no HR for c; no LR for d"):
        PairedDataset(lr, hr)


def test_make_file_list_filters_and_dedupes(tmp_path, gt_dir, capsys):
    from pisasr.cli.preprocess import make_file_list_main

    shutil.copy(gt_dir / "img0.png", gt_dir / "copy.png")
    image_file(gt_dir / "small.png", (20, 20))
    image_file(gt_dir / "narrow.png", (100, 40))  # long side above the minimum, short side below
    out = tmp_path / "list.txt"
    assert make_file_list_main([str(gt_dir), "-o", str(out), "--min_size", "64"]) == 0
    names = sorted(p.split("/")[-1] for p in out.read_text().split())
    assert names == ["copy.png", "img1.png", "img2.png", "img3.png"]  # sorted scan: the first copy is kept
    assert "2 small, 1 duplicate" in capsys.readouterr().out


def test_list_entries_resolve_against_the_lists_folder(tmp_path, gt_dir, monkeypatch):
    listing = gt_dir / "train.txt"
    listing.write_text("img0.png\nimg1.png\n")
    monkeypatch.chdir(tmp_path)
    assert read_file_list(listing) == [gt_dir / "img0.png", gt_dir / "img1.png"]


def test_test_pairs_sharpen_only_the_degradation_input(tmp_path, gt_dir):
    """StableSR's use_usm: the LR comes from the unsharp-masked crop, the HR file is the plain crop."""
    from dataclasses import replace

    from pisasr.data.prep import make_test_pairs
    from pisasr.io.images import read_image

    stablesr = load_degradation("configs/degradation/stablesr_div2k_val.yaml")
    assert make_test_pairs(gt_dir, tmp_path / "usm", stablesr, seed=2, crop=64)[0] == 4
    assert make_test_pairs(gt_dir, tmp_path / "plain", replace(stablesr, usm_sharpen=False), 2, 64)[0] == 4
    hr, source = read_image(tmp_path / "usm" / "HR" / "img0.png").rgb, read_image(gt_dir / "img0.png").rgb
    assert any(  # the HR is a crop of the source as it is
        torch.equal(hr, source[:, top : top + 64, left : left + 64]) for top in range(9) for left in range(17)
    )
    assert torch.equal(hr, read_image(tmp_path / "plain" / "HR" / "img0.png").rgb)
    lr = lambda d: read_image(tmp_path / d / "LR" / "img0.png").rgb  # noqa: E731
    assert not torch.equal(lr("usm"), lr("plain"))


def test_make_test_pairs_is_seeded(tmp_path, gt_dir):
    from pisasr.cli.preprocess import make_test_pairs_main

    for out in ("a", "b"):
        assert make_test_pairs_main([str(gt_dir), str(tmp_path / out), "--seed", "5", "--crop", "64"]) == 0
    from pisasr.io.images import read_image

    a, b = read_image(tmp_path / "a" / "LR" / "img2.png"), read_image(tmp_path / "b" / "LR" / "img2.png")
    assert a.rgb.shape == (3, 16, 16) and torch.equal(a.rgb, b.rgb)
    assert read_image(tmp_path / "a" / "HR" / "img2.png").rgb.shape == (3, 64, 64)
    assert len(PairedDataset(tmp_path / "a" / "LR", tmp_path / "a" / "HR")) == 4


def test_crops_too_small_for_the_degradation_are_one_line_errors(tmp_path, gt_dir, capsys):
    """A 32 crop would be reflect-padded by 10 at 9 pixels inside basicsr: refused before any work."""
    from pisasr.cli import run_cli
    from pisasr.cli.preprocess import make_test_pairs_main
    from pisasr.data.degradation import smallest_gt

    assert smallest_gt(PARAMS) == 44  # floor(44 * 0.3) = 13 and 44 / 4 = 11 stay above the kernel's half (10)
    with pytest.raises(ConfigError, match=r"data.crop_size=40 is too small .* use at least 44"):
        GTDataset(sorted(gt_dir.iterdir()), PARAMS, crop_size=40)
    assert GTDataset(sorted(gt_dir.iterdir()), PARAMS, crop_size=44)[0]["gt"].shape == (3, 44, 44)
    assert run_cli(make_test_pairs_main, [str(gt_dir), str(tmp_path / "pairs"), "--crop", "32"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --crop=32 is too small") and err.count("\n") == 1
