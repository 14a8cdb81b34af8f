"""The semantic objectives (csd, vsd, add) against computations written here, on fixed inputs.

Each loss and its gradient with respect to the generator's latent (VSD) or image (ADD) is recomputed from the
reference formulas (docs/objectives.md), replaying the step generator's draws in the objective's order: the fake
and real scores by calling the teacher with PEFT's adapters on or off directly, the ADD terms with a stub teacher,
decoder and discriminator. What they must catch (a flipped sign, a swapped weight, a widened timestep range) moves
the values by far more than the relative tolerance.
"""

import pytest
import torch
from torch import nn

from pisasr.losses.objectives import ObjectiveContext

RELATIVE = 1e-4


def close(actual, expected, what):
    error = float((actual - expected).norm() / expected.norm())
    assert error <= RELATIVE, f"{what}: relative L2 error {error:.2e}"


def alphas_cumprod():
    """SD's scaled-linear schedule, written out (beta 0.00085 .. 0.012, 1000 steps)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1 - betas, dim=0)


def x0(eps, noisy, t):
    a = alphas_cumprod()[t].view(-1, 1, 1, 1)
    return (noisy - (1 - a).sqrt() * eps) / a.sqrt()


def context(z, image=None, seed=3, dim=32):
    g = torch.Generator().manual_seed(11)
    b = z.shape[0]
    image = image if image is not None else torch.zeros(b, 3, 16, 16)
    return ObjectiveContext(
        z=z,
        image=image,
        hr=torch.rand(b, 3, 16, 16, generator=g) * 2 - 1,
        lr=torch.rand(b, 3, 16, 16, generator=g) * 2 - 1,
        positive=torch.randn(b, 77, dim, generator=g),
        negative=torch.randn(b, 77, dim, generator=g),
        generator=torch.Generator().manual_seed(seed),
    )


# -- vsd ----------------------------------------------------------------------------------------------------------
@pytest.fixture()
def vsd(tiny_base):
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from pisasr.losses.vsd import VSDObjective

    teacher = UNet2DConditionModel.from_pretrained(tiny_base, subfolder="unet")
    pristine = UNet2DConditionModel.from_pretrained(tiny_base, subfolder="unet")
    scheduler = DDPMScheduler.from_pretrained(tiny_base, subfolder="scheduler")
    # weights other than 1: a dropped or swapped weight changes the values
    return VSDObjective(teacher, scheduler, weight=1.5, guidance_scale=7.5, fake_weight=0.7), pristine


def eps_of(unet, noisy, t, emb, fake: bool):
    """The teacher's epsilon with PEFT's ``fake`` adapter on or with every adapter off."""
    if fake:
        unet.enable_adapters()
        unet.set_adapter("fake")
    else:
        unet.disable_adapters()
    with torch.no_grad():
        return unet(noisy, t, encoder_hidden_states=emb).sample


def randomize_fake(objective, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in objective.aux_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_vsd_fake_score_starts_equal_to_the_teacher_and_the_real_pass_is_the_teacher(vsd):
    """Fails if the fake adapter does not start at zero (B = 0), or if the real pass runs through it."""
    objective, pristine = vsd
    g = torch.Generator().manual_seed(0)
    noisy, t, emb = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([100, 700]), torch.randn(2, 77, 32)
    with torch.no_grad():
        plain = pristine(noisy, t, encoder_hidden_states=emb).sample
    with objective.fake_score() as fake, torch.no_grad():
        assert torch.equal(fake(noisy, t, encoder_hidden_states=emb).sample, plain)
    randomize_fake(objective)
    with torch.no_grad():
        real = objective.teacher(
            noisy, t, encoder_hidden_states=emb
        ).sample  # outside fake_score: adapters off
    assert torch.equal(real, plain)
    with objective.fake_score() as fake, torch.no_grad():
        assert not torch.allclose(fake(noisy, t, encoder_hidden_states=emb).sample, plain)


def test_vsd_generator_loss_and_gradient_match_osediff(vsd):
    """L = MSE(z, sg(z - grad)), grad = (x0_fake - x0_real) / mean|z - x0_real|, t in [20, 980), CFG 7.5 with the
    negative prompt as the unconditional branch. Fails on a flipped sign, another CFG, a widened t range."""
    objective, _ = vsd
    randomize_fake(objective)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    ctx = context(z)
    loss, parts = objective.generator_loss(ctx)
    loss.backward()

    g = torch.Generator().manual_seed(3)
    t = torch.randint(20, 980, (2,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    a = alphas_cumprod()[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * z.detach() + (1 - a).sqrt() * noise
    teacher = objective.teacher
    fake = x0(eps_of(teacher, noisy, t, ctx.positive, fake=True), noisy, t)
    e_neg = eps_of(teacher, noisy, t, ctx.negative, fake=False)
    e_pos = eps_of(teacher, noisy, t, ctx.positive, fake=False)
    real = x0(e_neg + 7.5 * (e_pos - e_neg), noisy, t)
    w = (z.detach() - real).abs().mean(dim=(1, 2, 3), keepdim=True)
    grad = (fake - real) / w
    close(loss.detach(), 1.5 * (grad**2).mean(), "VSD loss (weight 1.5)")
    close(parts["vsd"].detach(), (grad**2).mean(), "VSD part (unweighted)")
    close(z.grad, 1.5 * 2 * grad / z.numel(), "VSD gradient")


def test_vsd_fake_score_loss_is_plain_epsilon_mse_off_the_generator(vsd):
    """t in [0, 1000), no CFG, the caption; no gradient reaches the generator's latent; the fake LoRA gets one."""
    objective, _ = vsd
    randomize_fake(objective)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    ctx = context(z * 1.0)
    loss, _ = objective.aux_loss(ctx)
    loss.backward()
    assert z.grad is None
    assert all(p.grad is not None for p in objective.aux_parameters())
    assert any(p.grad.abs().sum() > 0 for p in objective.aux_parameters())

    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (2,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    a = alphas_cumprod()[t].view(-1, 1, 1, 1)
    noisy = a.sqrt() * z.detach() + (1 - a).sqrt() * noise
    expected = ((eps_of(objective.teacher, noisy, t, ctx.positive, fake=True) - noise) ** 2).mean()
    close(loss.detach(), 0.7 * expected, "fake-score loss (fake_weight 0.7)")


# -- add ----------------------------------------------------------------------------------------------------------
def test_ta_weight_table_and_student_steps():
    from pisasr.losses.add import student_step_index, ta_weight

    assert [ta_weight(s) for s in (1, 2, 3, 4)] == pytest.approx([0.5, 1.05, 2.205, 4.6305], rel=1e-12)
    assert [student_step_index(t) for t in (999, 749, 499, 249, 1)] == [1, 2, 3, 4, 4]


def test_hinge_and_adversarial_losses_on_fixed_logits():
    from pisasr.losses.add import adversarial_generator_loss, hinge_discriminator_loss

    real, fake = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([[-2.0, 0.3]])
    # relu(1 - real) = 0, 0.5, 2 -> 2.5 / 3; relu(1 + fake) = 0, 1.3 -> 0.65
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(2.5 / 3 + 0.65)
    assert float(adversarial_generator_loss(fake)) == pytest.approx(0.85)


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory):
    from pisasr.model.tiny_vit import make_tiny_dino, make_tiny_dinov2

    folder = tmp_path_factory.mktemp("vits")
    return str(make_tiny_dino(folder / "dino")), str(make_tiny_dinov2(folder / "dinov2"))


def test_discriminator_heads_give_five_maps_of_196_logits(tiny_dino):
    """[B, 5 * 196] for 224 crops; a larger image is cropped (or area-resized) to 224 first."""
    from pisasr.losses.discriminator import (
        DinoFeatures,
        Dinov2Condition,
        ProjectedDiscriminator,
        load_vit,
    )

    condition = Dinov2Condition(load_vit(tiny_dino[1], "dinov2"))
    d = ProjectedDiscriminator(DinoFeatures(load_vit(tiny_dino[0], "dino")), condition.dim)
    c = condition(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert c.shape == (2, 32)
    g = torch.Generator().manual_seed(0)
    for size in (224, 256, 64):
        assert d(torch.rand(2, 3, size, size) * 2 - 1, c, g).shape == (2, 5 * 196)
    assert sum(p.requires_grad for p in d.features.parameters()) == 0


def test_dino_features_are_blocks_2_5_8_11_and_the_embedding_with_the_cls_token_added(tiny_dino):
    """AddSR's (ADD's) discriminator reads the ViT-S/16 after blocks 2, 5, 8, 11 (0-based) and its patch embedding,
    each token plus the CLS token, from the image area-resized to 224 and ImageNet-normalised."""
    from pisasr.losses.discriminator import DinoFeatures, load_vit

    features = DinoFeatures(load_vit(tiny_dino[0], "dino"))
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    maps = features(x)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    normed = (torch.nn.functional.interpolate(x, size=224, mode="area") - mean) / std
    with torch.no_grad():
        hidden = features.vit(pixel_values=normed, output_hidden_states=True).hidden_states
    assert len(maps) == 5
    # hidden_states[0] is the embedding, [i + 1] block i's output
    for got, index in zip(maps, (3, 6, 9, 12, 0)):
        tokens = hidden[index]
        close(got, (tokens[:, 1:] + tokens[:, :1]).transpose(1, 2), f"DINO map from hidden state {index}")


def test_missing_dino_model_is_one_line():
    from pisasr.errors import ModelLoadError
    from pisasr.losses.discriminator import load_vit

    with pytest.raises(ModelLoadError) as err:
        load_vit("/nonexistent/dino-vits16", "dino")
    message = str(err.value)
    assert "\n" not in message and "/nonexistent/dino-vits16" in message and "train.add.dino" in message


class StubTeacher(nn.Module):
    """eps = 0.3 z_t + 0.01 t / 1000 + mean(prompt): a deterministic function of (z_t, t, prompt)."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, sample, timestep, encoder_hidden_states):
        eps = 0.3 * sample + 0.01 * timestep.view(-1, 1, 1, 1) / 1000
        eps = eps + encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return type("Out", (), {"sample": eps})()


class StubDiscriminator(nn.Module):
    """One 1x1 head on the image plus the condition; draws nothing."""

    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList([nn.Conv2d(3, 1, 1)])
        with torch.no_grad():
            self.heads[0].weight.copy_(torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1))
            self.heads[0].bias.fill_(0.1)

    def forward(self, x, condition, generator):
        return self.heads[0](x).flatten(1) + condition.sum(1, keepdim=True)


def stub_decode(latents):
    """4 latent channels -> 3 image channels, x2 upsampling, in [-1, 1]."""
    return torch.tanh(nn.functional.interpolate(latents[:, :3], scale_factor=2.0))


@pytest.fixture()
def add_objective(tiny_base):
    from diffusers import DDPMScheduler

    from pisasr.losses.add import ADDObjective

    scheduler = DDPMScheduler.from_pretrained(tiny_base, subfolder="scheduler")

    def condition(lr):
        return lr.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 4)

    return ADDObjective(StubTeacher(), scheduler, StubDiscriminator(), condition, weight=1.5)


def test_add_generator_loss_and_gradient_match_addsr(add_objective):
    """1.5 * (TA(4) * mean over draws and pixels of sqrt(alpha_bar) (x_teacher - x_student)^2 - 0.02 mean D(x)),
    4 teacher timesteps per sample in [0, 1000), one noise. Fails on a flipped adversarial sign, swapped weights,
    a missing sqrt(alpha_bar) or TA weight, a widened or narrowed tau range; and if the heads receive gradients."""
    obj = add_objective
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 8, 8, generator=g)
    image = (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1).requires_grad_(True)
    ctx = context(z, image, dim=8)
    ctx.decode = stub_decode
    loss, parts = obj.generator_loss(ctx)
    loss.backward()
    assert all(p.grad is None for p in obj.discriminator.heads.parameters())

    def expected_loss(x):
        gen = torch.Generator().manual_seed(3)
        taus = torch.randint(0, 1000, (8,), generator=gen)
        noise = torch.randn(z.shape, generator=gen)
        c = ctx.lr.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 4)
        logits = 0.5 * x[:, 0] - 1.0 * x[:, 1] + 2.0 * x[:, 2] + 0.1 + c.sum(1).view(-1, 1, 1)
        adversarial = -logits.mean()
        per_sample = torch.zeros(2)
        for k in range(4):
            tau = taus[2 * k : 2 * k + 2]
            a = alphas_cumprod()[tau].view(-1, 1, 1, 1)
            noisy = a.sqrt() * z + (1 - a).sqrt() * noise
            eps = (
                0.3 * noisy
                + 0.01 * tau.view(-1, 1, 1, 1) / 1000
                + ctx.positive.mean(dim=(1, 2)).view(-1, 1, 1, 1)
            )
            target = stub_decode(x0(eps, noisy, tau)) / 2 + 0.5
            per_sample = per_sample + (a.sqrt() * (target - (x / 2 + 0.5)) ** 2).mean(dim=(1, 2, 3))
        distillation = 4.6305 * (per_sample / 4).mean()
        return 1.5 * (distillation + 0.02 * adversarial), distillation, adversarial

    x = image.detach().clone().requires_grad_(True)
    total, distillation, adversarial = expected_loss(x)
    total.backward()
    close(parts["add_distill"].detach(), distillation.detach(), "distillation term")
    close(parts["add_adv"].detach(), adversarial.detach(), "adversarial term")
    close(loss.detach(), total.detach(), "ADD generator loss")
    close(image.grad, x.grad, "ADD gradient")


def test_discriminator_steps_first_on_the_detached_image_and_its_gradients_are_cleared(add_objective):
    """The before-phase step updates the heads with the hinge on (HR, x_hat.detach()), leaves no gradient on them
    and none on the generator's image; the generator's term that follows sees the updated heads."""
    from accelerate import Accelerator

    from pisasr.losses.add import hinge_discriminator_loss
    from pisasr.training.aux import AuxTrainer, TrainingExtras

    obj = add_objective
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(2, 3, 16, 16, generator=g) * 2 - 1).requires_grad_(True)
    ctx = context(torch.randn(2, 4, 8, 8, generator=g), image, dim=8)
    ctx.decode = stub_decode
    head = obj.discriminator.heads[0]
    before = [p.detach().clone() for p in head.parameters()]
    c = obj.condition(ctx.lr)
    expected_d = hinge_discriminator_loss(
        obj.discriminator(ctx.hr, c, None), obj.discriminator(image, c, None)
    )
    sgd = torch.optim.SGD(obj.aux_parameters(), lr=0.1)
    extras = TrainingExtras(obj, AuxTrainer(obj, Accelerator(cpu=True), sgd, None))
    logs = extras.before_objective(ctx)
    close(logs["add_d"], expected_d.detach(), "discriminator loss")
    assert image.grad is None and all(p.grad is None for p in head.parameters())
    assert extras.after_generator_step(ctx, True) == {}  # ADD has nothing after the generator's step
    moved = [not torch.equal(a, b) for a, b in zip(before, head.parameters())]
    assert all(moved)
    _, parts = obj.generator_loss(ctx)
    expected_adv = -obj.discriminator(image.detach(), c, None).mean()
    close(parts["add_adv"].detach(), expected_adv.detach(), "adversarial term with the updated heads")


# -- ema ----------------------------------------------------------------------------------------------------------
class _Adapters(nn.Module):
    def __init__(self):
        super().__init__()
        self.lora_trained = nn.Parameter(torch.zeros(3))
        self.lora_frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        self.base = nn.Parameter(torch.ones(1), requires_grad=False)


def test_ema_averages_the_trained_adapter_swaps_in_and_restores_exactly():
    from types import SimpleNamespace

    from pisasr.training.ema import AdapterEMA

    unet = _Adapters()
    ema = AdapterEMA(SimpleNamespace(unet=unet), 0.9)
    expected = torch.zeros(3)
    for k in range(1, 4):
        with torch.no_grad():
            unet.lora_trained.fill_(float(k))
            unet.lora_frozen.fill_(float(10 * k))
        ema.update()
        expected = 0.9 * expected + 0.1 * float(k)
    close(ema.shadow["lora_trained"], expected, "EMA")
    assert torch.equal(ema.shadow["lora_frozen"], torch.ones(2))  # not trained: its shadow stays
    assert "base" not in ema.shadow
    with ema.applied():
        assert torch.equal(unet.lora_trained.detach(), ema.shadow["lora_trained"])
    assert torch.equal(unet.lora_trained.detach(), torch.full((3,), 3.0))
    state = ema.state_dict()
    other = AdapterEMA(SimpleNamespace(unet=_Adapters()), 0.9)
    other.load_state_dict(state)
    other.restore_live()
    assert torch.equal(other.params["lora_trained"].detach(), torch.full((3,), 3.0))
    assert torch.equal(other.shadow["lora_trained"], ema.shadow["lora_trained"])


# -- configuration ------------------------------------------------------------------------------------------------
def test_objective_config_defaults_and_choices():
    from pisasr.config import load_config
    from pisasr.errors import ConfigError

    t = load_config("configs/train_official_sd21.yaml").train
    assert t.sem_objective == "csd" and t.ema_decay is None
    assert (t.vsd.t_min, t.vsd.t_max, t.vsd.guidance_scale, t.vsd.fake_rank) == (20, 980, 7.5, 4)
    assert (t.add.adversarial_weight, t.add.teacher_draws, t.add.student_step, t.add.learning_rate) == (
        0.02, 4, 4, 2e-5,
    )  # fmt: skip
    for bad in ("train.sem_objective=gan", "train.ema_decay=1.5", "train.vsd.t_max=1001"):
        with pytest.raises(ConfigError):
            load_config("configs/smoke.yaml", [bad])


@pytest.mark.parametrize("name", ["vsd", "add"])
def test_built_objectives_take_the_configs_weights_and_ranges(tiny_base, tiny_dino, name):
    """``train.lambda_<objective>`` and the section's options reach the objective (none of them at a default)."""
    from accelerate import Accelerator

    from pisasr.config import load_config
    from pisasr.training.objectives import build_objective

    options = {
        "vsd": ["train.lambda_vsd=1.5", "train.vsd.fake_weight=0.7", "train.vsd.t_min=30", "train.vsd.t_max=900",
                "train.vsd.guidance_scale=5.0", "train.vsd.fake_rank=2", "train.vsd.fake_alpha=3.0"],
        "add": ["train.lambda_add=1.5", "train.add.adversarial_weight=0.3", "train.add.distillation_weight=0.6",
                "train.add.teacher_draws=2", "train.add.student_step=3", f"train.add.dino={tiny_dino[0]}",
                f"train.add.dinov2={tiny_dino[1]}"],
    }[name]  # fmt: skip
    cfg = load_config(
        "configs/smoke.yaml",
        [
            f"model.base={tiny_base}",
            f"train.csd.teacher={tiny_base}",
            f"train.sem_objective={name}",
            *options,
        ],
    )
    objective, csd = build_objective(cfg, Accelerator(cpu=True))
    assert csd is None and objective.name == name and objective.weight == 1.5
    if name == "vsd":
        lora = objective.teacher.peft_config["fake"]
        got = (objective.fake_weight, objective.t_min, objective.t_max, objective.guidance_scale, lora.r)
        assert got == (0.7, 30, 900, 5.0, 2) and lora.lora_alpha == 3.0
    else:
        got = (objective.adversarial_weight, objective.distillation_weight, objective.teacher_draws)
        assert got == (0.3, 0.6, 2) and objective.student_step == 3


def test_model_runs_the_before_step_between_the_generator_and_the_objective(tiny_base):
    """PiSATrainModel.losses: forward, then the before-phase step (ADD's discriminator), then the objective's term,
    which is added to L2 and LPIPS with its own weight."""
    from pisasr.losses.objectives import SemanticObjective
    from pisasr.model import DualLoRA, load_base
    from pisasr.training.model import LossWeights, PiSATrainModel

    calls = []

    class Recording(SemanticObjective):
        def generator_loss(self, ctx):
            calls.append(("objective", ctx.image.requires_grad))
            return 3.0 * ctx.z.float().pow(2).mean(), {"rec": ctx.z.float().pow(2).mean()}

    base = load_base(tiny_base)
    model = PiSATrainModel(
        base, DualLoRA(base.unet), lambda a, b: (a - b).abs().mean(dim=(1, 2, 3)), None, LossWeights(), "neg",
        objective=Recording(),
    )  # fmt: skip
    model.dual.set_stage("sem")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    out = model.losses(
        "sem", x, x, ["cat"], torch.Generator().manual_seed(0), lambda ctx: calls.append(("before",)) or {}
    )
    assert calls == [("before",), ("objective", True)]
    expected = out["l2"] + 2.0 * out["lpips"] + 3.0 * out["rec"]
    close(out["loss"].detach(), expected.detach(), "total")
    assert out["context"].z.requires_grad
