"""Training pins (issue 28): non-default options reach the model, checkpoints order by step past 9, and the
validation metrics see the ranges they are defined on."""

from __future__ import annotations

import contextlib
import json
import math
import types

import pytest
import torch

from pisasr.training import checkpoints as ckpts


def _stub_accelerator():
    return types.SimpleNamespace(
        main_process_first=contextlib.nullcontext, num_processes=1, device=torch.device("cpu"), trackers=[]
    )


def test_non_default_training_options_reach_the_model(tiny_base):
    """Every option the training model takes, set away from its default in the config, is the model's value
    (a hard-coded 0.5 for null_text_ratio, a swapped weight or a dropped CSD setting would not be), and the share
    of dropped prompts follows null_text_ratio."""
    from pisasr.config import load_config
    from pisasr.training.loop import build_model

    overrides = {
        "model.base": tiny_base,
        "model.tiny_base_if_missing": False,
        "model.rank_pix": 2,
        "model.rank_sem": 6,
        "model.alpha_pix": 3.0,
        "model.alpha_sem": 5.0,
        "model.timestep": 7,
        "train.csd.teacher": tiny_base,
        "train.null_text_ratio": 0.2,
        "train.null_text_per_sample": True,
        "train.vae_sample": False,
        "train.lambda_l2": 0.3,
        "train.lambda_lpips": 0.7,
        "train.lambda_csd": 0.4,
        "train.csd.guidance_scale": 3.0,
        "train.csd.t_min_ratio": 0.1,
        "train.csd.t_max_ratio": 0.3,
        "train.csd.negative_prompt": "ugly",
        "train.csd.positive_suffix": "sharp",
        "train.csd.join_empty_caption": True,
    }
    cfg = load_config("configs/smoke.yaml", [f"{k}={v}" for k, v in overrides.items()])
    model, dual = build_model(cfg, _stub_accelerator(), None, needs_sem=True)
    assert model.null_text_ratio == 0.2 and model.null_text_per_sample is True and model.vae_sample is False
    assert (model.weights.l2, model.weights.lpips, model.weights.csd) == (0.3, 0.7, 0.4)
    assert model.timestep == 7 and model.negative_prompt == "ugly"
    assert model.positive_prompt("") == ", sharp" and model.positive_prompt("a cat") == "a cat, sharp"
    assert dual.ranks == {"pix": 2, "sem": 6} and dual.alphas == {"pix": 3.0, "sem": 5.0}
    steps = model.csd.scheduler.config.num_train_timesteps
    assert model.csd.guidance_scale == 3.0 and (model.csd.t_min, model.csd.t_max) == (
        steps // 10,
        int(steps * 0.3),
    )

    generator = torch.Generator().manual_seed(0)
    drawn = [model.generator_prompts(["p"] * 8, generator) for _ in range(250)]
    dropped = sum(p == "" for batch in drawn for p in batch) / 2000
    assert abs(dropped - 0.2) < 0.04, dropped  # 0.5 is far outside
    assert any(0 < batch.count("") < 8 for batch in drawn)  # per sample: batches mix kept and dropped prompts


# -- checkpoints past checkpoint-9 --------------------------------------------------------------------------------
def _checkpoints(root, steps, run_id="run"):
    for step in steps:
        folder = ckpts.checkpoint_path(root, step)
        folder.mkdir(parents=True)
        (folder / ckpts.STATE_NAME).write_text(json.dumps({"step": step, "run_id": run_id}))


@pytest.mark.parametrize("steps", [range(1, 13), [500, 1000, 1500, 2000, 10000]])
def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path, steps):
    """checkpoint-10 comes after checkpoint-9 (and checkpoint-1000 after -500): the newest is resumed by ``latest``
    and ``auto``, and pruning deletes the oldest, never the newest."""
    steps = list(steps)
    _checkpoints(tmp_path, steps)
    ckpts.staging_dir(tmp_path, steps[-1] + 1).mkdir()  # a partial save of a killed run: never a candidate
    names = [f"checkpoint-{s}" for s in steps]
    assert [p.name for p in ckpts.list_checkpoints(tmp_path)] == names
    for resume in ("latest", "auto"):
        assert [p.name for p in ckpts.resume_candidates(tmp_path, resume)] == names[::-1]
    ckpts.prune(tmp_path, 3, "run")
    assert [p.name for p in ckpts.list_checkpoints(tmp_path)] == names[-3:]


# -- validation metrics' ranges -----------------------------------------------------------------------------------
def test_validation_psnr_on_0_1_and_lpips_on_minus1_1():
    """A stand-in model whose prediction is exactly the HR plus 0.1 (in [0, 1]): PSNR is 20 dB as defined on
    [0, 1] images (on [-1, 1] it would read 14 dB), and LPIPS gets both images in [-1, 1]."""
    from pisasr.training.validation import validate

    g = torch.Generator().manual_seed(0)
    hr = 0.1 + 0.5 * torch.rand(3, 32, 32, generator=g)  # dark enough that [-1, 1] has negatives
    lr = torch.nn.functional.interpolate(hr[None], size=(8, 8), mode="area")[0]
    target = (hr + 0.1) * 2 - 1  # the prediction, in the model's [-1, 1]
    seen = {}

    def lpips(a, b):
        seen["a"], seen["b"] = a.clone(), b.clone()
        return torch.zeros(1)

    vae = types.SimpleNamespace(
        config=types.SimpleNamespace(scaling_factor=1.0),
        dtype=torch.float32,
        decode=lambda z: types.SimpleNamespace(sample=z),
    )

    class UNet:
        dtype = torch.float32

        def __call__(self, z, t, encoder_hidden_states):
            seen["encoded"] = z.clone()
            return types.SimpleNamespace(sample=z - target[None])  # z - eps = target

    model = types.SimpleNamespace(
        base=types.SimpleNamespace(unet=UNet(), vae=vae),
        vae_sample=True,
        encode=lambda x, generator: x,  # the "latent" is the model input itself, in [-1, 1]
        embed=lambda prompts: torch.zeros(len(prompts), 1, 4),
        timestep=1,
        lpips=lpips,
    )
    metrics = validate(model, [{"hr": hr, "lr": lr}], _stub_accelerator(), step=0)
    assert math.isclose(metrics["val/psnr"], 20.0, abs_tol=0.01), metrics
    assert seen["encoded"].min() >= -1 and seen["encoded"].min() < 0  # the model input went in as [-1, 1]
    torch.testing.assert_close(seen["b"][0], hr * 2 - 1)
    torch.testing.assert_close(seen["a"][0], target.clamp(-1, 1))
    assert model.vae_sample is True  # restored after validation's posterior mode
