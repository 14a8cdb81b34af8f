"""The dual-LoRA UNet: targets, stage invariants, merging, and the lambda combination."""

import pytest
import torch

from pisasr.model import DualLoRA, load_base, lora_target_modules
from pisasr.model.dual_lora import combine_eps
from pisasr.testing.fixtures import official_module_groups, randomize_lora


@pytest.fixture()
def dual(tiny_base):
    base = load_base(tiny_base, text_encoder=False)
    dual = DualLoRA(base.unet)
    randomize_lora(base.unet, seed=3)
    return dual


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 16, 12, generator=g), torch.randn(2, 77, 32, generator=g)


def _eps(dual, z, emb):
    with torch.no_grad():
        return dual.unet(z, 1, encoder_hidden_states=emb).sample


def test_targets_match_the_official_rule(tiny_base):
    unet = load_base(tiny_base, text_encoder=False).unet
    official = sum(official_module_groups(unet).values(), [])
    assert sorted(lora_target_modules(unet)) == sorted(official)
    assert not any("norm" in t for t in official) and "conv_in" in official and "conv_out" in official


def test_every_target_is_wrapped_by_both_adapters(dual):
    for name in ("pix", "sem"):
        keys = {k.rsplit(".lora_", 1)[0] for k in dual.state_dict(name)}
        assert keys == set(dual.target_modules)


def test_stages_set_active_and_trainable(dual):
    pix, sem = set(map(id, dual.adapter_parameters("pix"))), set(map(id, dual.adapter_parameters("sem")))
    dual.set_stage("pix")
    assert set(map(id, dual.trainable_parameters())) == pix
    dual.set_stage("sem")
    assert set(map(id, dual.trainable_parameters())) == sem
    dual.set_stage("eval")
    assert dual.trainable_parameters() == []


def _snapshot(unet, keep):
    return {n: p.detach().clone() for n, p in unet.named_parameters() if keep(n)}


@pytest.mark.parametrize("stage, frozen_adapter", [("sem", "pix"), ("pix", "sem")])
def test_frozen_weights_stay_bit_identical_through_optimizer_steps(dual, stage, frozen_adapter):
    unet = dual.unet
    is_frozen = lambda n: "lora_" not in n or f".{frozen_adapter}." in n  # noqa: E731
    before = _snapshot(unet, is_frozen)
    trained_before = _snapshot(unet, lambda n: f".{stage}." in n)
    dual.set_stage(stage)
    opt = torch.optim.AdamW(dual.trainable_parameters(), lr=1e-2, weight_decay=1e-2)
    z, emb = _inputs()
    for _ in range(3):
        loss = unet(z, 1, encoder_hidden_states=emb).sample.pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    after = _snapshot(unet, is_frozen)
    assert before.keys() == after.keys() and len(before) > 0
    assert all(torch.equal(before[k], after[k]) for k in before)
    trained_after = _snapshot(unet, lambda n: f".{stage}." in n)
    assert any(not torch.equal(trained_before[k], trained_after[k]) for k in trained_before)


def test_sem_changes_the_prediction_and_lambdas_follow_the_formula(dual):
    z, emb = _inputs(1)
    dual.activate(["pix"])
    eps_pix = _eps(dual, z, emb)
    dual.activate(["pix", "sem"])
    eps_full = _eps(dual, z, emb)
    assert (eps_full - eps_pix).abs().max() > 1e-3
    z_h = combine_eps(z, eps_pix, eps_full, 0.7, 1.3)
    expected = z - 0.7 * eps_pix - 1.3 * eps_full + 1.3 * eps_pix
    torch.testing.assert_close(z_h, expected)
    torch.testing.assert_close(combine_eps(z, eps_pix, eps_full, 1.0, 1.0), z - eps_full)
    torch.testing.assert_close(combine_eps(z, eps_pix, eps_full, 1.0, 0.0), z - eps_pix)


def test_merged_and_subtracting_match_unmerged_adapters(dual):
    z, emb = _inputs(2)
    dual.activate(["pix"])
    eps_pix = _eps(dual, z, emb)
    dual.activate(["pix", "sem"])
    eps_full = _eps(dual, z, emb)
    base_weight = dual.unet.conv_in.base_layer.weight.detach().clone()
    dual.merge(["pix", "sem"])
    merged_weight = dual.unet.conv_in.base_layer.weight.detach().clone()
    torch.testing.assert_close(_eps(dual, z, emb), eps_full, rtol=1e-4, atol=1e-5)
    with dual.subtracting("sem"):
        torch.testing.assert_close(_eps(dual, z, emb), eps_pix, rtol=1e-4, atol=1e-5)
    assert torch.equal(dual.unet.conv_in.base_layer.weight, merged_weight)  # subtracting rewrites nothing
    torch.testing.assert_close(_eps(dual, z, emb), eps_full, rtol=1e-4, atol=1e-5)
    dual.unmerge()
    torch.testing.assert_close(dual.unet.conv_in.base_layer.weight, base_weight)
