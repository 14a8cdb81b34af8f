"""Shipped resources and caches are found from any current folder (subprocesses run outside the checkout)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import image_file

from pisasr.config import load_config
from pisasr.data.degradation import load_degradation
from pisasr.io.paths import RESOURCES, shipped, user_cache_dir

REPO = Path(__file__).resolve().parents[1]


def _run_elsewhere(cwd: Path, xdg: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(xdg)}
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def _cached_tiny_base(xdg: Path, tiny_base: str) -> Path:
    """The session's tiny base, placed where the smoke config looks for it (so the test does not regenerate it)."""
    target = xdg / "pisasr" / "tiny-sd-base"
    target.parent.mkdir(parents=True)
    target.symlink_to(tiny_base, target_is_directory=True)
    return target


def test_smoke_inference_outside_the_checkout_uses_the_user_cache(tiny_base, tmp_path):
    elsewhere, xdg = tmp_path / "elsewhere", tmp_path / "xdg"
    cached = _cached_tiny_base(xdg, tiny_base)
    image = image_file(tmp_path / "in.png", (16, 16))
    done = _run_elsewhere(
        elsewhere, xdg, str(REPO / "scripts" / "infer.py"), "--config", str(REPO / "configs" / "smoke.yaml"),
        "-i", str(image), "-o", "out", "inference.process_size=64",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["out"]  # no ./.cache with a new random base
    run = json.loads((elsewhere / "out" / "run.json").read_text())["runs"][-1]
    assert run["config"]["model"]["base"] == str(cached)


def test_training_outside_the_checkout_finds_the_shipped_degradation(tiny_base, tmp_path):
    elsewhere, xdg = tmp_path / "elsewhere", tmp_path / "xdg"
    _cached_tiny_base(xdg, tiny_base)
    gt = tmp_path / "gt"
    gt.mkdir()
    image_file(gt / "a.png", (72, 72))
    done = _run_elsewhere(
        elsewhere, xdg, str(REPO / "scripts" / "train.py"), "--config", str(REPO / "configs" / "smoke.yaml"),
        f"data.gt_dirs=[{gt}]", "train.output_dir=run", "train.stage=pix", "train.pix_steps=1",
        "train.max_steps=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "run" / "final").is_dir() and not (elsewhere / ".cache").exists()


def test_shipped_paths_prefer_the_users_own_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "configs/degradation/realesrgan.yaml"
    assert shipped(name) == RESOURCES / "degradation" / "realesrgan.yaml"
    assert load_degradation(name).jpeg_range == [60, 95]
    assert shipped("configs/smoke.yaml") == REPO / "configs" / "smoke.yaml"
    assert load_config("configs/smoke.yaml").model.base == str(user_cache_dir() / "tiny-sd-base")
    assert shipped("configs/nope.yaml") == Path("configs/nope.yaml")  # errors name what the user wrote
    (tmp_path / "configs" / "degradation").mkdir(parents=True)
    (tmp_path / name).write_text("jpeg_range: [30, 40]\n")
    assert shipped(name) == Path(name) and load_degradation(name).jpeg_range == [30, 40]


def test_user_cache_dir_honours_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert user_cache_dir() == tmp_path / "pisasr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir() == tmp_path / "home" / ".cache" / "pisasr"


def test_every_shipped_resource_is_package_data():
    """pyproject's package-data globs (setuptools expands them as glob does) cover every file in resources/."""
    import glob

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "pisasr"
    ]
    packaged = {path for pattern in patterns for path in glob.glob(pattern, root_dir=REPO / "pisasr")}
    shipped_files = {p.relative_to(REPO / "pisasr").as_posix() for p in RESOURCES.rglob("*") if p.is_file()}
    assert "resources/degradation/realesrgan.yaml" in shipped_files and shipped_files <= packaged


def test_smoke_config_finds_its_example_images_from_any_folder(tiny_base, tmp_path):
    """Neither -i nor data.gt_dirs given: the smoke config's examples are the checkout's, for infer and training."""
    elsewhere, xdg = tmp_path / "elsewhere", tmp_path / "xdg"
    _cached_tiny_base(xdg, tiny_base)
    smoke = str(REPO / "configs" / "smoke.yaml")
    done = _run_elsewhere(elsewhere, xdg, str(REPO / "scripts" / "infer.py"), "--config", smoke, "-o", "out",
                          "inference.process_size=64")  # fmt: skip
    assert done.returncode == 0, done.stderr
    examples = sorted(p.name for p in (REPO / "examples").glob("*.png"))
    assert sorted(p.name for p in (elsewhere / "out").glob("*.png")) == examples
    done = _run_elsewhere(elsewhere, xdg, str(REPO / "scripts" / "train.py"), "--config", smoke,
                          "train.output_dir=run", "train.stage=pix", "train.pix_steps=1", "train.max_steps=1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (elsewhere / "run" / "final").is_dir()
