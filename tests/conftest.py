import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a hub

import pytest
import torch

from pisasr.cli import quiet_libraries

quiet_libraries()
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """Path of the tiny offline SD-shaped base, written once per test session."""
    from pisasr.model.tiny_base import make_tiny_base

    return str(make_tiny_base(tmp_path_factory.mktemp("bases") / "tiny"))


@pytest.fixture(scope="session")
def trained_checkpoint(tiny_base, tmp_path_factory):
    """A pisasr checkpoint folder whose adapters are random and non-zero (so both change the output)."""
    from pisasr.model import DualLoRA, load_base
    from pisasr.model.checkpoint import save_checkpoint
    from pisasr.testing.fixtures import randomize_lora

    base = load_base(tiny_base, text_encoder=False)
    dual = DualLoRA(base.unet)
    randomize_lora(base.unet, seed=1)
    out = tmp_path_factory.mktemp("ckpt") / "trained"
    save_checkpoint(dual, out, base_model=tiny_base)
    return str(out)


@pytest.fixture(scope="session")
def pipe(tiny_base, trained_checkpoint):
    from pisasr.inference.pipeline import Pipeline

    return Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu")


def accelerate_launch(num_processes: int, port: int) -> list[str]:
    """Command prefix for a real multi-process run; on a machine without GPUs the processes use gloo on the CPU."""
    import sys

    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
    ]  # fmt: skip


def image_file(path, size=(40, 32), mode="RGB", seed=0):
    """A smooth random test image on disk (PNG unless the suffix says otherwise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    small = rng.integers(0, 256, (4, 4, channels), dtype=np.uint8)
    img = Image.fromarray(small.squeeze(-1) if channels == 1 else small, mode).resize(
        size, Image.Resampling.BICUBIC
    )
    img.save(path)
    return path


def run_infer(*args) -> int:
    """``scripts/infer.py ARGS`` in this process; returns its exit code."""
    from pisasr.cli import run_cli
    from pisasr.cli.infer import main

    return run_cli(main, [str(a) for a in args])


def infer_args(tiny_base, out, *extra) -> list:
    """The flags every CLI test shares: output folder, tiny base, CPU, small process size."""
    return ["-o", out, "--base", tiny_base, "--device", "cpu", "--process_size", "64", *extra]


@pytest.fixture()
def lr_dir(tmp_path):
    """A folder with two small photos: a.png (24x20) and b.jpg (20x28)."""
    folder = tmp_path / "lr"
    folder.mkdir()
    image_file(folder / "a.png", (24, 20))
    image_file(folder / "b.jpg", (20, 28), seed=1)
    return folder
