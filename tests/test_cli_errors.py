"""Every command prints only its own lines: a bad argument gives exactly one ``error:`` line on stderr.

Each error here is raised after the command has imported the libraries it needs (diffusers, peft, transformers,
pyiqa, accelerate), so a library that starts logging at import or load time (a new release, an optional kernel
download) fails a test here before it reaches users. CI also runs this file against the newest releases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600
    )


def assert_one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr was:\n{done.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_infer_missing_weights(tmp_path):
    missing = tmp_path / "no-weights"
    done = run(["scripts/infer.py", "--config", "configs/smoke.yaml", "-o", str(tmp_path / "out"),
                "--weights", str(missing)], tmp_path)  # fmt: skip
    assert_one_error_line(done, "weights not found", str(missing))


def test_infer_bad_base_after_the_models_are_imported(tmp_path):
    base = tmp_path / "not-a-base"
    base.mkdir()
    done = run(["scripts/infer.py", "--config", "configs/smoke.yaml", "-o", str(tmp_path / "out"),
                "--base", str(base), "model.tiny_base_if_missing=false"], tmp_path)  # fmt: skip
    assert_one_error_line(done, str(base), "diffusers layout")


@pytest.mark.slow
def test_train_bad_base(tmp_path):
    base = tmp_path / "not-a-base"
    base.mkdir()
    done = run(["scripts/train.py", "--config", "configs/smoke.yaml", f"model.base={base}",
                "model.tiny_base_if_missing=false", f"train.output_dir={tmp_path / 'run'}"], tmp_path)  # fmt: skip
    assert_one_error_line(done, str(base))


def test_evaluate_unknown_metric(tmp_path):
    done = run(["scripts/evaluate.py", "--sr", "examples", "--gt", "examples", "--metrics", "psnrr",
                "--out", str(tmp_path / "m")], tmp_path)  # fmt: skip
    assert_one_error_line(done, "psnrr", "did you mean 'psnr'")


def test_reproduce_missing_test_set(tmp_path):
    done = run(["scripts/reproduce.py", "--data_root", str(tmp_path), "--sets", "RealSR",
                "--out", str(tmp_path / "r")], tmp_path)  # fmt: skip
    assert_one_error_line(done, str(tmp_path / "RealSR"))


def test_convert_missing_checkpoint(tmp_path):
    done = run(
        ["scripts/convert_official_ckpt.py", str(tmp_path / "none.pkl"), str(tmp_path / "out")], tmp_path
    )
    assert_one_error_line(done, "none.pkl")


def test_demo_help_prints_only_the_help(tmp_path):
    done = run(["scripts/demo.py", "--help"], tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "--max_pixels" in done.stdout


def test_demo_missing_config(tmp_path):
    done = run(["scripts/demo.py", "--config", str(tmp_path / "none.yaml")], tmp_path)
    assert_one_error_line(done, "none.yaml")


@pytest.mark.parametrize(
    "tool, args",
    [
        ("make_file_list.py", ["{missing}", "-o", "{tmp}/list.txt"]),
        ("make_test_pairs.py", ["{missing}", "{tmp}/pairs"]),
        ("extract_prompts.py", ["--dir", "{missing}", "-o", "{tmp}/prompts.jsonl"]),
    ],
)
def test_preprocess_missing_folder(tool, args, tmp_path):
    missing = tmp_path / "missing"
    args = [a.format(missing=missing, tmp=tmp_path) for a in args]
    done = run([f"preprocess/{tool}", *args], tmp_path)
    assert_one_error_line(done, str(missing))


def test_commands_never_import_bitsandbytes(tmp_path):
    """bitsandbytes (installed with pyiqa) fetches a kernel from the hub when imported on AVX512-BF16 CPUs: a
    pisasr command must not import it, though diffusers and peft would whenever it is installed."""
    done = run(["-X", "importtime", "scripts/infer.py", "--config", "configs/smoke.yaml",
                "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "none")], tmp_path)  # fmt: skip
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "diffusers" in imported and "peft" in imported  # the check below is about a real model import
    assert not [name for name in imported if name.split(".")[0] == "bitsandbytes"]
