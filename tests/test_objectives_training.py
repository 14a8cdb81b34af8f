"""Each semantic objective end to end on the tiny base, through ``scripts/train.py``: both stages run, the
objective's network and the sem adapter train, the semantic loss moves, a resumed run reproduces the uninterrupted
one bit for bit (adapters, both optimizers, the objective's network, the EMA, RNG), and with two processes the
objective's network stays identical on both ranks."""

import json
import shutil

import pytest
import torch
from conftest import accelerate_launch
from test_resume import assert_identical, checkpoint_contents
from test_training import run_train, train_args

from pisasr.model.checkpoint import load_checkpoint

STEPS = (
    "train.pix_steps=2",
    "train.max_steps=4",
    "train.checkpointing_steps=1",
    "train.checkpoints_total_limit=null",
)


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory):
    from pisasr.model.tiny_vit import make_tiny_dino, make_tiny_dinov2

    folder = tmp_path_factory.mktemp("vits")
    return [
        f"train.add.dino={make_tiny_dino(folder / 'dino')}",
        f"train.add.dinov2={make_tiny_dinov2(folder / 'v2')}",
    ]


def objective_args(name, tiny_vits):
    extra = {"vsd": ["train.ema_decay=0.9"], "add": tiny_vits}[name]
    return [f"train.sem_objective={name}", *extra, *STEPS]


def extras_state(checkpoint):
    return torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=False)


def logged(out, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.mark.parametrize("name, loss_tag", [("vsd", "loss/vsd"), ("add", "loss/add_distill")])
def test_objective_trains_both_stages_and_resumes_exactly(tiny_base, tmp_path, tiny_vits, name, loss_tag):
    args = objective_args(name, tiny_vits)
    straight = tmp_path / "straight"
    done = run_train(train_args(tiny_base, straight, *args))
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = [straight / "checkpoints" / f"checkpoint-{s}" for s in range(5)]
    states = {s: load_checkpoint(ckpt[s]).states for s in (2, 3, 4)}
    assert any(not torch.equal(states[3]["sem"][k], states[4]["sem"][k]) for k in states[3]["sem"])
    net = {s: extras_state(ckpt[s])["objective"] for s in (2, 3, 4)}
    assert any(not torch.equal(net[2][k], net[3][k]) for k in net[2])  # its network trains in stage sem only
    assert any(not torch.equal(net[3][k], net[4][k]) for k in net[3])
    losses = logged(straight, loss_tag)
    assert set(losses) == {3, 4} and losses[3] != losses[4]  # the semantic term is computed and moves

    resumed = tmp_path / "resumed"
    shutil.copytree(ckpt[3], resumed / "checkpoints" / "checkpoint-3")
    done = run_train(train_args(tiny_base, resumed, *args, "train.resume_from_checkpoint=latest"))
    assert done.returncode == 0, done.stderr[-3000:]
    again = resumed / "checkpoints" / "checkpoint-4"
    assert_identical(checkpoint_contents(ckpt[4]), checkpoint_contents(again), "checkpoint-4")
    assert_identical(extras_state(ckpt[4]), extras_state(again), "checkpoint-4 objective and EMA")
    assert_identical(load_checkpoint(straight / "final").states, load_checkpoint(resumed / "final").states)


def test_ema_weights_are_what_the_checkpoints_and_final_hold(tiny_base, tmp_path):
    """train.ema_decay: the adapter files hold the EMA of the trained adapter, the training state the live weights
    (from which a resumed run goes on). Pix stage only (the EMA does not depend on the objective)."""
    out = tmp_path / "ema"
    done = run_train(
        train_args(tiny_base, out, "train.stage=pix", "train.ema_decay=0.75", *STEPS[:1], *STEPS[2:])
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = out / "checkpoints" / "checkpoint-2"
    ema = extras_state(ckpt)["ema"]
    shadow = {n.replace(".pix.", "."): t for n, t in ema["shadow"].items() if ".pix." in n}
    live = {n.replace(".pix.", "."): t for n, t in ema["live"].items() if ".pix." in n}
    saved = load_checkpoint(ckpt).states["pix"]
    assert saved.keys() == shadow.keys()
    assert all(torch.equal(saved[k], shadow[k].cpu()) for k in saved)
    assert any(not torch.equal(saved[k], live[k].cpu()) for k in saved)
    first = load_checkpoint(out / "checkpoints" / "checkpoint-1").states["pix"]  # step 1's shadow
    # step 2's shadow = 0.75 * step 1's shadow + 0.25 * step 2's live weights (not 0.5: decay and 1 - decay differ)
    for key, value in shadow.items():
        expected = 0.75 * first[key] + 0.25 * live[key].cpu()
        assert torch.allclose(value.cpu(), expected, rtol=1e-6, atol=1e-8), key
    assert all(torch.equal(load_checkpoint(out / "final").states["pix"][k], saved[k]) for k in saved)


@pytest.mark.slow
@pytest.mark.parametrize("name, port", [("vsd", 29541), ("add", 29543)])
def test_two_processes_keep_the_objective_network_identical(tiny_base, tmp_path, tiny_vits, name, port):
    out = tmp_path / "ddp"
    done = run_train(
        train_args(tiny_base, out, *objective_args(name, tiny_vits)), launcher=accelerate_launch(2, port)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for step in range(1, 5):
        state = json.loads((out / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").read_text())
        assert len(set(state["rank_adapter_digests"])) == 1
        assert len(state["rank_objective_digests"]) == 2 and len(set(state["rank_objective_digests"])) == 1
    first, last = (extras_state(out / "checkpoints" / f"checkpoint-{s}")["objective"] for s in (2, 4))
    assert any(not torch.equal(first[k], last[k]) for k in first)
