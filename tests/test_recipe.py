"""The official recipe's two options, gradient accumulation, the final checkpoint, and the training benchmark."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pisasr.config import load_config
from pisasr.model.checkpoint import load_checkpoint
from pisasr.training.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


# -- the frozen pix adapter in the optimizer (unit) ------------------------------------------------------------
def _train_cfg(frozen_in_optimizer: bool):
    return load_config(
        None,
        [f"train.frozen_pix_in_optimizer={str(frozen_in_optimizer).lower()}", "train.learning_rate=0.01"],
    ).train


def _two_stages(frozen_in_optimizer: bool, pix_steps=3, sem_steps=3, restart_after=None):
    """One optimizer over both adapters, as the training loop: pix trains, then sem trains with pix frozen (its
    gradient None, as ``zero_grad(set_to_none=True)`` and a backward with ``requires_grad=False`` leave it).
    ``restart_after``: rebuild params and optimizer from a state dict after that many sem steps (a resume)."""
    cfg = _train_cfg(frozen_in_optimizer)
    init = torch.Generator().manual_seed(0)
    pix, sem = (torch.nn.Parameter(torch.randn(6, generator=init)) for _ in range(2))
    opt = build_optimizer([pix, sem], cfg)
    grads = torch.Generator().manual_seed(1)
    sem.requires_grad_(False)
    for _ in range(pix_steps):
        pix.grad = torch.randn(6, generator=grads)
        opt.step()
        opt.zero_grad(set_to_none=True)
    end_of_pix = pix.detach().clone(), copy.deepcopy(opt.state[pix])
    sem_state_in_pix_stage = dict(opt.state[sem])
    pix.requires_grad_(False)
    sem.requires_grad_(True)
    for k in range(sem_steps):
        if k == restart_after:
            saved, values = opt.state_dict(), (pix.detach().clone(), sem.detach().clone())
            pix, sem = torch.nn.Parameter(values[0], requires_grad=False), torch.nn.Parameter(values[1])
            opt = build_optimizer([pix, sem], cfg)
            opt.load_state_dict(saved)
        sem.grad = torch.randn(6, generator=grads)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"pix": pix, "sem": sem, "opt": opt, "end_of_pix": end_of_pix, "sem_state": sem_state_in_pix_stage}


def _adamw_with_zero_grads(value, state, steps, cfg):
    """torch's AdamW stepped by hand on a copy of ``value`` (with its optimizer ``state``), zero gradients."""
    ref = torch.nn.Parameter(value.clone())
    opt = torch.optim.AdamW(
        [ref], lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay,
        eps=cfg.adam_epsilon,
    )  # fmt: skip
    opt.state[ref] = copy.deepcopy(state)
    for _ in range(steps):
        ref.grad = torch.zeros_like(ref)
        opt.step()
    return ref.detach()


def test_frozen_pix_is_bit_identical_by_default():
    run = _two_stages(False)
    assert torch.equal(run["pix"].detach(), run["end_of_pix"][0])
    assert int(run["opt"].state[run["pix"]]["step"]) == 3  # AdamW never touched pix in stage sem
    assert load_config(None).train.frozen_pix_in_optimizer is False


def test_frozen_pix_follows_adamw_with_zero_grads_in_the_official_mode():
    run = _two_stages(True)
    value, state = run["end_of_pix"]
    expected = _adamw_with_zero_grads(value, state, 3, _train_cfg(True))
    assert not torch.equal(expected, value)  # momentum and weight decay move it
    assert torch.equal(run["pix"].detach(), expected)
    assert int(run["opt"].state[run["pix"]]["step"]) == 6  # the step count runs on through stage sem


@pytest.mark.parametrize("frozen_in_optimizer", [False, True])
def test_sem_moments_start_at_the_stage_switch(frozen_in_optimizer):
    """As in the official code (sem has no gradient in stage pix), sem has no AdamW state until its first step."""
    run = _two_stages(frozen_in_optimizer)
    assert run["sem_state"] == {}
    assert int(run["opt"].state[run["sem"]]["step"]) == 3
    assert torch.equal(
        run["sem"], _two_stages(not frozen_in_optimizer)["sem"]
    )  # sem trains the same either way


def test_official_mode_resumes_exactly_mid_stage():
    """Keyed to the optimizer state, not to gradient tensors left from the previous step: exact after a restart."""
    straight, resumed = _two_stages(True), _two_stages(True, restart_after=1)
    assert torch.equal(straight["pix"], resumed["pix"]) and torch.equal(straight["sem"], resumed["sem"])


# -- the official empty-caption prompt ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("join", "suffix", "caption", "prompt"),
    [
        (False, "", "", ""),
        (False, "", "a cat", "a cat, "),
        (False, "clean", "", "clean"),
        (True, "", "", ", "),  # the official f"{caption}, {pos_prompt_csd}" with both empty
        (True, "clean", "", ", clean"),
        (True, "", "a cat", "a cat, "),
    ],
)
def test_positive_prompt(join, suffix, caption, prompt):
    from pisasr.training.model import LossWeights, PiSATrainModel

    model = PiSATrainModel(
        None, None, None, None, LossWeights(), "neg", positive_suffix=suffix, join_empty_caption=join
    )
    assert model.positive_prompt(caption) == prompt


def test_official_config_uses_the_official_recipe_and_the_schema_pisasrs():
    official = load_config(REPO / "configs/train_official_sd21.yaml").train
    schema = load_config(None).train
    assert official.frozen_pix_in_optimizer and official.csd.join_empty_caption
    assert not schema.frozen_pix_in_optimizer and not schema.csd.join_empty_caption


# -- end to end on the smoke config: 2 pix + 2 sem optimizer steps of 2 micro-batches each ------------------------
@pytest.fixture(scope="module")
def smoke_runs(tiny_base, tmp_path_factory):
    """One run per mode, a checkpoint at every optimizer step."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    outs = {}
    for frozen in (False, True):
        out = tmp_path_factory.mktemp("recipe") / f"frozen_in_optimizer_{frozen}"
        done = subprocess.run(
            [
                sys.executable, "scripts/train.py", "--config", "configs/smoke.yaml", f"model.base={tiny_base}",
                "model.tiny_base_if_missing=false", f"train.csd.teacher={tiny_base}", f"train.output_dir={out}",
                "train.pix_steps=2", "train.max_steps=4", "train.gradient_accumulation_steps=2",
                "train.checkpointing_steps=1", "train.checkpoints_total_limit=null",
                f"train.frozen_pix_in_optimizer={str(frozen).lower()}",
            ],
            cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        outs[frozen] = out
    return outs


def _pix_names(tiny_base):
    """PEFT keys of the pix adapter in the optimizer's parameter order (pix first, module order)."""
    from pisasr.model import DualLoRA, load_base

    unet = load_base(tiny_base, text_encoder=False).unet
    DualLoRA(unet)
    return [n.replace(".pix.", ".") for n, _ in unet.named_parameters() if "lora_" in n and ".pix." in n]


def _optimizer_state(checkpoint):
    return torch.load(checkpoint / "optimizer.bin", weights_only=False)


def test_training_run_keeps_pix_frozen_or_steps_it_as_the_official(smoke_runs, tiny_base):
    names = _pix_names(tiny_base)
    for frozen, out in smoke_runs.items():
        end_of_pix = out / "checkpoints" / "checkpoint-2"
        before, after = (
            load_checkpoint(end_of_pix).states["pix"],
            load_checkpoint(out / "final").states["pix"],
        )
        if not frozen:
            assert all(torch.equal(before[k], after[k]) for k in names)
            continue
        cfg = load_config(REPO / "configs/smoke.yaml").train
        state = _optimizer_state(end_of_pix)["state"]
        moved = 0
        for i, key in enumerate(names):
            expected = _adamw_with_zero_grads(before[key], state[i], 2, cfg)
            # bit-identical on the CPU; a GPU run's fused kernels may differ in the last bit
            torch.testing.assert_close(after[key], expected, rtol=1e-6, atol=1e-9, msg=key)
            moved += not torch.equal(after[key], before[key])
        assert moved > len(names) // 2


def test_gradient_accumulation_counts_optimizer_steps(smoke_runs):
    import json

    out = smoke_runs[False]
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == [f"checkpoint-{s}" for s in range(1, 5)]
    last = out / "checkpoints" / "checkpoint-4"
    trainer = json.loads((last / "trainer_state.json").read_text())
    assert (trainer["step"], trainer["batches_seen"]) == (4, 8)  # 4 optimizer steps of 2 micro-batches
    assert torch.load(last / "scheduler.bin", weights_only=False)["last_epoch"] == 4
    steps = {int(s["step"]) for s in _optimizer_state(last)["state"].values()}
    assert steps == {2}  # pix: 2 steps in stage pix; sem: 2 in stage sem
    assert load_checkpoint(out / "final").meta.extra["step"] == 4


def test_final_checkpoint_carries_its_base_fingerprint(smoke_runs, tiny_base):
    from pisasr.model import load_base

    meta = load_checkpoint(smoke_runs[False] / "final").meta
    assert meta.base_fingerprint == load_base(tiny_base, text_encoder=False).fingerprint
    assert meta.base_model == tiny_base


# -- the training benchmark's core (so that the GPU script cannot rot) ---------------------------------------------
def test_train_bench_runs_one_step_on_the_tiny_base(tiny_base, tmp_path):
    """Stage sem (its code path covers pix's); then the BENCHMARKS.md section writer."""
    from benchmarks import train_bench

    bench = train_bench.build(tiny_base, "no", "cpu")
    sem = train_bench.measure(bench, "sem", 1, 64, True, False, peak_tflops=1.0, repeats=1, warmup=0)
    assert not sem.get("oom") and sem["ms_per_step"] > 0 and sem["degradation_images_per_s"] > 0
    assert sem["tflop_per_step"] > 0
    assert sem["mfu"] == pytest.approx(sem["tflop_per_step"] / (sem["ms_per_step"] / 1e3), rel=0.05)
    assert int(bench.optimizer.state[bench.dual.adapter_parameters("sem")[0]]["step"]) == 2  # counted + timed

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# x\n<!-- gpu-train:start -->\nold\n<!-- gpu-train:end -->\ntail\n")
    rows = [sem, {**sem, "oom": True, "batch": 8}]
    train_bench.write_section(doc, rows, "bash benchmarks/run_gpu_train.sh")
    text = doc.read_text()
    assert "old" not in text and text.endswith("<!-- gpu-train:end -->\ntail\n")
    assert "| sem | 1 | no | yes | no |" in text and "| sem | 8 | no | yes | no | out of memory |" in text
