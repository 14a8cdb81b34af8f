"""Every command prints only its own lines: a bad argument gives exactly one ``error:`` line on stderr.

Each error here is raised after the command has imported the libraries it needs (diffusers, peft, transformers,
pyiqa, accelerate), so a library that starts logging at import or load time (a new release, an optional kernel
download) fails a test here before it reaches users. CI also runs this file against the newest releases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
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
    errors = [line for line in lines if line.startswith("error: ")]
    others = [line for line in lines if not line.startswith(("error: ", "warning: ", "note: "))]
    assert len(errors) == 1 and not others, f"stderr was:\n{done.stderr}"  # pisasr's own notes may precede it
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# Runs a script and prints, at exit, what ``sys.modules`` holds for bitsandbytes: "module" (imported), "NoneType"
# (blocked by ``quiet_libraries``) or "str" (nothing asked for it).
REPORT_BITSANDBYTES = (
    "import atexit, runpy, sys; atexit.register(lambda: print('bitsandbytes:', "
    "type(sys.modules.get('bitsandbytes', '')).__name__, file=sys.stderr)); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_a_command_leaves_bitsandbytes_unimported(tmp_path):
    """pyiqa installs bitsandbytes, and diffusers, transformers and peft import it whenever it is installed; on
    some CPUs its import then asks the hub for a kernel. pisasr never uses it, so its commands never import it."""
    try:
        version("bitsandbytes")
    except PackageNotFoundError:
        pytest.skip("bitsandbytes is not installed: nothing to keep unimported")
    done = run(["-c", REPORT_BITSANDBYTES, "scripts/infer.py", "--config", "configs/smoke.yaml",
                "-o", str(tmp_path / "out")], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "bitsandbytes: NoneType", done.stderr


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
