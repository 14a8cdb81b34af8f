"""Resume is exact at any step of any epoch: adapters, optimizer moments, step and every rank's RNG states of a
resumed run equal the uninterrupted run's, with 1 and 2 processes and gradient accumulation."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import accelerate_launch, image_file
from test_training import run_train, train_args

from pisasr.model.checkpoint import load_checkpoint


def checkpoint_contents(ckpt) -> dict:
    """What a resumed run must reproduce bit for bit."""
    state = json.loads((ckpt / "trainer_state.json").read_text())
    return {
        "adapters": load_checkpoint(ckpt).states,
        "optimizer": torch.load(ckpt / "optimizer.bin", weights_only=False),
        "position": (state["step"], state["batches_seen"], state["stage"]),
        "rng": [torch.load(p, weights_only=False) for p in sorted(ckpt.glob("random_states_*.pkl"))],
    }


def assert_identical(a, b, where="checkpoint"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def resume_copy(straight, out, step):
    """A run folder holding only the uninterrupted run's checkpoint at ``step``, as a run killed after it."""
    shutil.copytree(
        straight / "checkpoints" / f"checkpoint-{step}", out / "checkpoints" / f"checkpoint-{step}"
    )


def check_resume(tiny_base, tmp_path, resume_at, end, extra, launcher=None):
    every_step = ("train.checkpointing_steps=1", "train.checkpoints_total_limit=null", *extra)
    kwargs = {"launcher": launcher} if launcher else {}
    straight = tmp_path / "straight"
    done = run_train(train_args(tiny_base, straight, *every_step), **kwargs)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = tmp_path / "resumed"
    resume_copy(straight, resumed, resume_at)
    done = run_train(
        train_args(tiny_base, resumed, *every_step, "train.resume_from_checkpoint=latest"), **kwargs
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        f"resumed from {resumed / 'checkpoints' / f'checkpoint-{resume_at}'} at step {resume_at}"
        in done.stderr
    )
    for step in range(resume_at + 1, end + 1):
        name = f"checkpoints/checkpoint-{step}"
        assert_identical(checkpoint_contents(straight / name), checkpoint_contents(resumed / name), name)
    assert_identical(load_checkpoint(straight / "final").states, load_checkpoint(resumed / "final").states)


def test_resume_inside_a_later_epoch_is_exact(tiny_base, tmp_path):
    # 4 images, batch 1: 4 steps an epoch; checkpoint 6 is the 3rd batch of epoch 1, and the run goes on into epoch 2
    check_resume(tiny_base, tmp_path, 6, 9, ("train.stage=pix", "train.pix_steps=9"))


@pytest.mark.slow
def test_two_processes_with_accumulation_resume_inside_a_later_epoch(tiny_base, tmp_path):
    # 8 images on 2 processes, batch 1, 2 micro-batches a step: 2 steps an epoch; step 3 is inside epoch 1
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        image_file(images / f"{i}.png", (72, 72), seed=i)
    extra = (
        f"data.gt_dirs=[{images}]",
        "train.stage=pix",
        "train.pix_steps=5",
        "train.gradient_accumulation_steps=2",
    )
    check_resume(tiny_base, tmp_path, 3, 5, extra, launcher=accelerate_launch(2, 29531))


# -- auto resume, damaged checkpoints ------------------------------------------------------------------------------
def test_auto_starts_fresh_then_resumes_and_skips_a_damaged_checkpoint(tiny_base, tmp_path):
    out = tmp_path / "run"
    pix = ("train.stage=pix", "train.checkpointing_steps=1", "train.checkpoints_total_limit=null")
    latest = run_train(
        train_args(tiny_base, out, *pix, "train.pix_steps=3", "train.resume_from_checkpoint=latest")
    )
    assert latest.returncode == 2 and "no complete checkpoint in" in latest.stderr.strip().splitlines()[-1]
    first = run_train(
        train_args(tiny_base, out, *pix, "train.pix_steps=3", "train.resume_from_checkpoint=auto")
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"no checkpoint in {out / 'checkpoints'}: starting a new run" in first.stderr
    damaged = out / "checkpoints" / "checkpoint-3" / "optimizer.bin"
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated, as by a full disk
    again = run_train(
        train_args(tiny_base, out, *pix, "train.pix_steps=4", "train.resume_from_checkpoint=auto")
    )
    assert again.returncode == 0, again.stderr[-3000:]
    warnings = [line for line in again.stderr.splitlines() if "could not be loaded" in line]
    assert len(warnings) == 1 and str(out / "checkpoints" / "checkpoint-3") in warnings[0]
    assert f"resumed from {out / 'checkpoints' / 'checkpoint-2'} at step 2" in again.stderr
    assert json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())["step"] == 4


# -- another run's output folder (issue 18) --------------------------------------------------------------------------
def test_a_new_run_refuses_a_folder_holding_another_run(tiny_base, tmp_path):
    out = tmp_path / "run"
    short = ("train.stage=pix", "train.pix_steps=2", "train.checkpointing_steps=1")
    assert run_train(train_args(tiny_base, out, *short, "train.pix_steps=3")).returncode == 0
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    final_before = load_checkpoint(out / "final").states
    refused = run_train(
        train_args(tiny_base, out, *short, "train.seed=1", "train.overwrite_output_dir=false")
    )
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out} already holds another training run's checkpoints")
    assert "train.resume_from_checkpoint=auto" in last and "train.overwrite_output_dir=true" in last
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    assert_identical(load_checkpoint(out / "final").states, final_before)
    replaced = run_train(
        train_args(tiny_base, out, *short, "train.seed=1", "train.overwrite_output_dir=true")
    )
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    run_ids = {
        json.loads((p / "trainer_state.json").read_text())["run_id"] for p in (out / "checkpoints").iterdir()
    }
    assert len(run_ids) == 1 and sorted(p.name for p in (out / "checkpoints").iterdir()) == before[:2]


def test_pruning_deletes_only_this_runs_checkpoints(tmp_path):
    from pisasr.training import checkpoints as ckpts

    for step, run_id in ((1, "other"), (2, "other"), (3, "mine"), (4, "mine"), (5, "mine")):
        folder = ckpts.checkpoint_path(tmp_path, step)
        folder.mkdir(parents=True)
        (folder / ckpts.STATE_NAME).write_text(json.dumps({"step": step, "run_id": run_id}))
    ckpts.prune(tmp_path, 1, "mine")
    assert [p.name for p in ckpts.list_checkpoints(tmp_path)] == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-5",
    ]
