"""Training: learning on a fixed batch, stage invariants under DDP, exact resume after a kill, errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import accelerate_launch

from pisasr.model.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def train_args(base, out, *extra):
    return [
        "scripts/train.py",
        "--config",
        "configs/smoke.yaml",
        f"model.base={base}",
        "model.tiny_base_if_missing=false",
        f"train.csd.teacher={base}",
        f"train.output_dir={out}",
        *extra,
    ]


def run_train(args, launcher=(sys.executable,), timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*launcher, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout
    )


def adapter_states(path):
    return load_checkpoint(path).states


def same_tensors(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- learning ---------------------------------------------------------------------------------------------------
def test_both_stages_learn_on_a_fixed_batch(tiny_base):
    import numpy as np

    from pisasr.data.degradation import Degrader, load_degradation, model_input, sample_kernels
    from pisasr.losses import CSDLoss, make_lpips
    from pisasr.model import DualLoRA, load_base
    from pisasr.training.model import LossWeights, PiSATrainModel

    torch.manual_seed(0)
    base = load_base(tiny_base)
    teacher = load_base(tiny_base, text_encoder=False)
    dual = DualLoRA(base.unet)
    model = PiSATrainModel(
        base,
        dual,
        make_lpips(False),
        CSDLoss(teacher.unet, teacher.scheduler),
        LossWeights(),
        "bad quality",
        vae_sample=False,
    )
    params = load_degradation("configs/degradation/realesrgan.yaml")
    gt = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8), size=(64, 64), mode="bicubic").clamp(0, 1)
    samples = [sample_kernels(params, np.random.default_rng(i)) for i in range(2)]
    kernels = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    lq = model_input(Degrader(params)(gt, kernels, torch.Generator().manual_seed(0)), (64, 64)) * 2 - 1
    gt = gt * 2 - 1

    def loss(stage):
        return model.losses(stage, lq, gt, ["a photo", ""], torch.Generator().manual_seed(1))

    # stage 2 starts from losses that stage 1 already lowered (its L2 and LPIPS), hence the milder bound: on the
    # clamped prediction it trades some L2 for a much lower CSD
    for stage, lr, steps, bound in (("pix", 2e-3, 12, 0.8), ("sem", 5e-3, 20, 0.95)):
        dual.set_stage(stage)
        opt = torch.optim.AdamW(dual.trainable_parameters(), lr=lr)
        with torch.no_grad():
            before = loss(stage)["loss"].item()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss(stage)["loss"].backward()
            opt.step()
        with torch.no_grad():
            after = loss(stage)["loss"].item()
        assert after < bound * before, (stage, before, after)


# -- end to end, real processes -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_sync_sem_and_keep_pix_frozen(tiny_base, tmp_path):
    out = tmp_path / "ddp"
    done = run_train(
        train_args(
            tiny_base,
            out,
            "train.pix_steps=2",
            "train.max_steps=5",
            "train.checkpointing_steps=1",
            "train.checkpoints_total_limit=null",
        ),
        launcher=accelerate_launch(2, 29523),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    for step in range(1, 6):  # every checkpoint verified that both ranks hold identical adapters
        digests = json.loads((out / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").read_text())[
            "rank_adapter_digests"
        ]
        assert len(digests) == 2 and digests[0] == digests[1]
    end_of_pix, first_sem, final = (
        adapter_states(out / "checkpoints" / f"checkpoint-{s}") for s in (2, 3, 5)
    )
    assert same_tensors(end_of_pix["pix"], final["pix"])  # pix bit-identical through stage 2
    assert not same_tensors(end_of_pix["sem"], first_sem["sem"]) and not same_tensors(
        first_sem["sem"], final["sem"]
    )  # sem trains
    assert same_tensors(adapter_states(out / "final")["sem"], final["sem"])


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tiny_base, tmp_path):
    extra = ("train.pix_steps=3", "train.max_steps=8", "train.checkpointing_steps=2", "data.crop_size=128")
    straight = run_train(train_args(tiny_base, tmp_path / "straight", *extra))
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert "the sem stage runs without prompts" in straight.stderr  # smoke config has no data.prompts

    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, *train_args(tiny_base, out, *extra)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while (
        not (out / "checkpoints" / "checkpoint-2").is_dir() and proc.poll() is None and time.time() < deadline
    ):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "final").exists(), "the run finished before it could be killed"
    resumed = run_train(train_args(tiny_base, out, *extra, "train.resume_from_checkpoint=latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a, b = adapter_states(tmp_path / "straight" / "final"), adapter_states(out / "final")
    assert same_tensors(a["pix"], b["pix"]) and same_tensors(a["sem"], b["sem"])
    assert len(list((out / "checkpoints").iterdir())) <= 3  # checkpoints_total_limit


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_base, tmp_path):
    out = tmp_path / "nan"
    first = run_train(train_args(tiny_base, out, "train.pix_steps=2", "train.max_steps=2"))
    assert first.returncode == 0, first.stderr[-3000:]
    broken = run_train(
        train_args(
            tiny_base,
            out,
            "train.pix_steps=2",
            "train.max_steps=4",
            "train.lambda_csd=nan",
            "train.resume_from_checkpoint=latest",
        )
    )
    assert broken.returncode == 2
    last = broken.stderr.strip().splitlines()[-1]
    assert last.startswith("error: non-finite loss at step 2 (stage sem)") and "checkpoint-2" in last
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (
        out / "checkpoints" / "checkpoint-3"
    ).exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.gt_lists=[missing_list.txt]", "dataset list not found: missing_list.txt"),
        ("train.stage=sem", "train.stage=sem needs train.pix_checkpoint"),
        ("model.base=nobody/absent-model", "cannot load base model 'nobody/absent-model'"),
        ("train.mixed_precision=fp8", "train.mixed_precision"),
    ],
)
def test_start_up_errors_are_one_line(tiny_base, tmp_path, override, message):
    done = run_train(train_args(tiny_base, tmp_path / "err", override))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_validation_mixed_precision_and_accumulation(tiny_base, tmp_path):
    """bf16 autocast with fp32 adapters, 2-step gradient accumulation, validation images and scalars logged."""
    from conftest import image_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pisasr.cli.preprocess import make_test_pairs_main

    hr = tmp_path / "hr"
    hr.mkdir()
    image_file(hr / "v.png", (80, 80))
    assert make_test_pairs_main([str(hr), str(tmp_path / "val"), "--crop", "64"]) == 0
    out = tmp_path / "run"
    done = run_train(train_args(
        tiny_base, out, "train.pix_steps=1", "train.max_steps=2", "train.mixed_precision=bf16",
        "train.gradient_accumulation_steps=2", "train.validation_steps=1",
        f"data.val_lr_dir={tmp_path / 'val' / 'LR'}", f"data.val_hr_dir={tmp_path / 'val' / 'HR'}",
    ))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(t.dtype == torch.float32 for s in adapter_states(out / "final").values() for t in s.values())
    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/l2", "loss/csd", "lr", "step_time", "images_per_s", "val/psnr", "val/lpips"} <= scalars
    assert any(tag.startswith("val/") for tag in events.Tags()["images"])
