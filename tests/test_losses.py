"""Training losses against values computed independently, from the official formulas, on fixed inputs.

The model is built by the training code itself (``build_model``) from ``configs/train_official_sd21.yaml`` on the
tiny base, so the loss weights, the CSD settings and the prompt rule are the ones a real run uses. The reference
below re-implements the official step (``PiSASR.forward``, ``CSDLoss.cal_csd`` and the loss sum of
``train_pisasr.py``) with the official constants written out, replaying the generator's draws in pisasr's order.
"""

import pytest
import torch

from pisasr.config import NEGATIVE_PROMPT
from pisasr.model.base import encode_prompts

OFFICIAL = {"l2": 1.0, "lpips": 2.0, "csd": 1.0, "cfg": 7.5, "t_min": 20, "t_max": 500, "timestep": 1}
CAPTIONS = ["a photo of a cat", ""]  # the second exercises the official empty-caption join (", ")
SEED = 2  # a seed at which the generator's prompts are not dropped (checked below), so they matter


@pytest.fixture(scope="module")
def official_model(tiny_base):
    from accelerate import Accelerator

    from pisasr.config import load_config
    from pisasr.training.loop import build_model

    cfg = load_config(
        "configs/train_official_sd21.yaml",
        [
            f"model.base={tiny_base}",
            f"train.csd.teacher={tiny_base}",
            "train.lpips_vgg_pretrained=false",
            'train.mixed_precision="no"',
        ],
    )
    model, dual = build_model(cfg, Accelerator(cpu=True), None, needs_sem=True)
    dual.set_stage("sem")
    return model


def _fixed_batch():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(
        torch.rand(2, 3, 8, 8, generator=g), size=(64, 64), mode="bicubic"
    )
    gt = smooth.clamp(0, 1) * 2 - 1
    lq = (gt + 0.2 * torch.randn(gt.shape, generator=g)).clamp(-1, 1)
    return lq, gt


def _alphas_cumprod() -> torch.Tensor:
    """SD's scaled-linear schedule (beta 0.00085 .. 0.012, 1000 steps), as the tiny base's scheduler config."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1 - betas, dim=0)


def _x0(eps, noisy, alpha_bar):
    return (noisy - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5


# Two computations of one gradient differ by summation order (batched against separate teacher passes, fused
# kernels), so they agree to a relative L2 norm, not element by element: a few elements near zero can differ by more
# than any absolute bound that holds on every machine. What these tests must catch moves the gradient by far more
# than 1e-3 of its norm: swapping the LPIPS and CSD weights (2, 1 -> 1, 2) by tens of percents, a flipped CSD sign
# by 200%, another timestep range or guidance scale by percents or more.
GRADIENT_RELATIVE_TOLERANCE = 1e-3


def assert_relatively_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    error = float((actual - expected).norm() / expected.norm())
    assert error <= GRADIENT_RELATIVE_TOLERANCE, f"{what}: relative L2 error {error:.2e}"


def reference_losses(model, lq, gt, captions, seed):
    base, teacher = model.base, model.csd.teacher
    vae, unet, sf = base.vae, base.unet, base.vae.config.scaling_factor
    g, device = torch.Generator().manual_seed(seed), model.device

    def embed(prompts):
        with torch.no_grad():
            return encode_prompts(base.tokenizer, base.text_encoder, prompts)

    with torch.no_grad():
        dist = vae.encode(lq).latent_dist
        z_lr = (dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g).to(device)) * sf
    positive = [f"{c}, " for c in captions]  # official: f"{caption}, {args.pos_prompt_csd}", suffix ""
    dropped = bool(torch.rand(1, generator=g).item() < 0.5)
    cond = embed([""] * len(captions) if dropped else positive)
    t1 = torch.full((len(captions),), OFFICIAL["timestep"], device=device)
    z_h = z_lr - unet(z_lr, t1, encoder_hidden_states=cond).sample
    pred = vae.decode(z_h / sf).sample.clamp(-1, 1)
    l2 = ((pred - gt) ** 2).mean()
    lpips = model.lpips(pred, gt).mean()

    t = torch.randint(OFFICIAL["t_min"], OFFICIAL["t_max"], (len(captions),), generator=g).to(device)
    noise = torch.randn(z_h.shape, generator=g).to(device)
    alpha_bar = _alphas_cumprod().to(device)[t].view(-1, 1, 1, 1)
    latents = z_h.detach()
    noisy = alpha_bar**0.5 * latents + (1 - alpha_bar) ** 0.5 * noise
    with torch.no_grad():  # two separate teacher passes (the code under test batches them)
        eps_uncond = teacher(noisy, t, encoder_hidden_states=embed([NEGATIVE_PROMPT] * len(captions))).sample
        eps_text = teacher(noisy, t, encoder_hidden_states=embed(positive)).sample
    eps_cfg = eps_uncond + OFFICIAL["cfg"] * (eps_text - eps_uncond)
    real, fake = _x0(eps_cfg, noisy, alpha_bar), _x0(eps_uncond, noisy, alpha_bar)
    weight = (latents - real).abs().mean(dim=(1, 2, 3), keepdim=True)
    csd = ((z_h - (z_h - (fake - real) / weight).detach()) ** 2).mean()
    total = OFFICIAL["l2"] * l2 + OFFICIAL["lpips"] * lpips + OFFICIAL["csd"] * csd
    return {"loss": total, "l2": l2, "lpips": lpips, "csd": csd, "dropped": dropped}


def test_sem_loss_and_its_gradient_are_the_official_weighted_sum(official_model):
    """Fails if the LPIPS and CSD weights are swapped (1 and 2 instead of 2 and 1), if CSD is fed the prompts the
    wrong way round, or if an empty caption is not joined as the official code does."""
    model = official_model
    lq, gt = (x.to(model.device) for x in _fixed_batch())
    params = model.dual.trainable_parameters()
    ours = model.losses("sem", lq, gt, CAPTIONS, torch.Generator().manual_seed(SEED))
    ref = reference_losses(model, lq, gt, CAPTIONS, SEED)
    assert not ref["dropped"]
    assert abs(ref["lpips"].detach() - ref["csd"].detach()) > 0.05  # a swap of their weights shows
    for key in ("l2", "lpips", "csd", "loss"):
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-6, msg=key)
    ours_grad = torch.autograd.grad(ours["loss"], params)
    ref_grad = torch.autograd.grad(ref["loss"], params)
    flat = torch.cat([g.flatten() for g in ours_grad]), torch.cat([g.flatten() for g in ref_grad])
    assert flat[1].abs().max() > 0
    assert_relatively_close(*flat, what="gradient of the semantic loss")


def test_csd_gradient_points_along_the_positive_minus_negative_score(official_model):
    """d CSD / d z_H = 2 (x0_fake - x0_real) / (w N), proportional to +(eps_text - eps_uncond) with a positive
    factor: gradient descent moves z_H towards the positive prompt's guided prediction. Fails on a flipped sign."""
    model, csd = official_model, official_model.csd
    g = torch.Generator().manual_seed(5)
    z_h = torch.randn(2, 4, 8, 8, generator=g).to(model.device).requires_grad_(True)
    positive = model.embed(["a photo of a cat, ", "a house, "])
    negative = model.embed([NEGATIVE_PROMPT] * 2)
    csd(z_h, positive, negative, torch.Generator().manual_seed(7)).backward()

    draws = torch.Generator().manual_seed(7)
    t = torch.randint(OFFICIAL["t_min"], OFFICIAL["t_max"], (2,), generator=draws).to(model.device)
    noise = torch.randn(z_h.shape, generator=draws).to(model.device)
    alpha_bar = _alphas_cumprod().to(model.device)[t].view(-1, 1, 1, 1)
    latents = z_h.detach()
    noisy = alpha_bar**0.5 * latents + (1 - alpha_bar) ** 0.5 * noise
    with torch.no_grad():
        eps_uncond = csd.teacher(noisy, t, encoder_hidden_states=negative).sample
        eps_text = csd.teacher(noisy, t, encoder_hidden_states=positive).sample
    eps_cfg = eps_uncond + OFFICIAL["cfg"] * (eps_text - eps_uncond)
    real = _x0(eps_cfg, noisy, alpha_bar)
    weight = (latents - real).abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = 2 * (_x0(eps_uncond, noisy, alpha_bar) - real) / weight / latents.numel()
    assert_relatively_close(z_h.grad, expected, what="CSD gradient")
    cosine = torch.nn.functional.cosine_similarity(z_h.grad.flatten(1), (eps_text - eps_uncond).flatten(1))
    assert (cosine > 0.999).all(), cosine


class _RecordingTeacher(torch.nn.Module):
    """Stands in for the teacher UNet: predicts zero noise and records the timesteps it is asked about."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.timesteps = []

    def forward(self, sample, timestep, encoder_hidden_states):
        self.timesteps.append(timestep.clone())
        return type("Out", (), {"sample": torch.zeros_like(sample)})()


def test_csd_timesteps_are_drawn_from_20_to_500(official_model):
    """The official range for a 1000-step scheduler is [20, 500); fails if widened (e.g. to [20, 980)) or narrowed."""
    csd, recorder, batch = official_model.csd, _RecordingTeacher(), 4096
    teacher, csd.teacher = csd.teacher, recorder
    try:
        emb = torch.zeros(batch, 1, 4, device=official_model.device)
        csd(torch.randn(batch, 4, 1, 1, device=emb.device), emb, emb, torch.Generator().manual_seed(0))
    finally:
        csd.teacher = teacher
    t = torch.cat(recorder.timesteps).cpu()
    assert t.min() >= 20 and t.max() <= 499
    assert t.min() <= 25 and t.max() >= 494  # the whole range is used
