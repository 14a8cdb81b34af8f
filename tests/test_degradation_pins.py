"""The Real-ESRGAN recipe itself, pinned by equivalence with basicsr's own implementation (issue 28).

basicsr ships Real-ESRGAN's reference: the kernels of ``RealESRGANDataset.__getitem__`` and the second-order
degradation of ``RealESRGANModel.feed_data``. Both sides here are driven by one fixed sequence of U[0, 1) values,
each side taking them in the order it draws (basicsr's ``random`` / ``np.random`` / global-torch draws, pisasr's
generator draws, each mapped to its value by the same inverse CDF), and the sampling helpers both call (kernel
shapes, noise) run under the same seed on both sides. Any difference left is a difference of recipe: which
direction a resize probability means, each stage's JPEG range, the sinc cut-off per kernel size, GT sharpening.
"""

from __future__ import annotations

import random
import types
from bisect import bisect_right
from contextlib import contextmanager
from dataclasses import asdict, replace

import basicsr.data.realesrgan_dataset as bs_data
import basicsr.models.realesrgan_model as bs_model
import cv2
import numpy as np
import pytest
import torch
from basicsr.utils import DiffJPEG, USMSharp

import pisasr.data.degradation as degradation
from pisasr.data.degradation import Degrader, load_degradation, sample_kernels, training_input

TRAIN = "configs/degradation/realesrgan.yaml"  # PiSA-SR's training degradation (no GT sharpening)
TEST_SET = "configs/degradation/stablesr_div2k_val.yaml"  # StableSR's, with use_usm


class Script:
    """The shared draws: ``u()`` is the next U[0, 1) value, ``pick(weights)`` an index by inverse CDF."""

    def __init__(self):
        self.values: list[float] = []
        self.active = self.paused = False
        self.seeds = 0

    @contextmanager
    def run(self, values):
        # float32-exact, so pisasr's float32 torch draws and basicsr's float64 numpy draws are the same number
        self.values, self.active, self.seeds = [float(np.float32(v)) for v in values], True, 0
        try:
            yield
        finally:
            self.active = False

    @property
    def live(self) -> bool:
        return self.active and not self.paused

    def u(self) -> float:
        assert self.values, "the recipe drew more values than the scenario holds"
        return self.values.pop(0)

    def pick(self, weights) -> int:
        cum = np.cumsum(np.asarray(weights, dtype=float))
        return bisect_right(list(cum / cum[-1]), self.u())

    @contextmanager
    def seeded(self):
        """A helper both sides call (noise, kernel shapes): same seed on both sides, no scripted draws."""
        self.seeds += 1
        np_state, py_state = np.random.get_state(), random.getstate()
        self.paused = True
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seeds)
                np.random.seed(self.seeds)
                random.seed(self.seeds)
                yield
        finally:
            self.paused = False
            np.random.set_state(np_state)
            random.setstate(py_state)


@pytest.fixture
def script(monkeypatch):
    s = Script()
    real_rand, real_multinomial = torch.rand, torch.multinomial
    real_uniform_, real_np_uniform = torch.Tensor.uniform_, np.random.uniform

    def rand(*size, generator=None, **kwargs):  # pisasr's probability checks and uniform draws
        if generator is None or not s.live:
            return real_rand(*size, generator=generator, **kwargs)
        assert size in ((), ((),)), size
        return torch.tensor(s.u())

    def multinomial(probs, num_samples, *args, generator=None, **kwargs):  # pisasr's choices
        if generator is None or not s.live:
            return real_multinomial(probs, num_samples, *args, generator=generator, **kwargs)
        return torch.tensor([s.pick(probs.tolist())])

    def uniform_(self, low=0.0, high=1.0, *, generator=None):  # both sides' JPEG qualities
        if not s.live:
            return real_uniform_(self, low, high, generator=generator)
        values = [low + (high - low) * s.u() for _ in range(self.numel())]
        return self.copy_(torch.tensor(values, dtype=self.dtype).view_as(self))

    def np_uniform(low=0.0, high=1.0, size=None):  # basicsr's probability checks and uniform draws
        if size is not None or not s.live:
            return real_np_uniform(low, high, size)
        return low + (high - low) * s.u()

    def basicsr_choices(population, weights=None, k=1):
        assert k == 1
        return [population[s.pick(weights if weights is not None else [1] * len(population))]]

    def helper(fn):
        def call(*args, **kwargs):
            with s.seeded():
                return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(torch, "rand", rand)
    monkeypatch.setattr(torch, "multinomial", multinomial)
    monkeypatch.setattr(torch.Tensor, "uniform_", uniform_)
    monkeypatch.setattr(np.random, "uniform", np_uniform)
    fake_random = types.SimpleNamespace(
        choices=basicsr_choices, choice=lambda seq: basicsr_choices(list(seq))[0]
    )  # anything else basicsr would draw from `random` fails loudly
    monkeypatch.setattr(bs_model, "random", fake_random)
    monkeypatch.setattr(bs_data, "random", fake_random)
    for module in (degradation, bs_model):
        for name in ("random_add_gaussian_noise_pt", "random_add_poisson_noise_pt"):
            monkeypatch.setattr(module, name, helper(getattr(module, name)))
    for module in (degradation, bs_data):
        monkeypatch.setattr(module, "random_mixed_kernels", helper(module.random_mixed_kernels))
    # basicsr's filter2D views its input, which DiffJPEG's output on the CPU does not allow (same values)
    monkeypatch.setattr(
        bs_model, "filter2D", lambda img, kernel, f=bs_model.filter2D: f(img.contiguous(), kernel)
    )
    return s


class ScriptedGenerator:
    """Stands for the numpy Generator ``sample_kernels`` draws from."""

    def __init__(self, script: Script):
        self.s = script

    def choice(self, options):
        return list(options)[self.s.pick([1] * len(options))]

    def uniform(self, low=0.0, high=1.0):
        return low + (high - low) * self.s.u()

    def integers(self, low, high=None):  # numpy_seeded's seed: the helper is seeded by the script instead
        return 0


# ----------------------------------------------------------------------------------------------------------------
# Kernels: sample_kernels vs RealESRGANDataset.__getitem__


@pytest.fixture(scope="module")
def basicsr_dataset(tmp_path_factory):
    """A RealESRGANDataset on one 400x400 image (its crop size: no crop or flip draws), kernels from ``TRAIN``."""
    folder = tmp_path_factory.mktemp("realesrgan")
    cv2.imwrite(str(folder / "a.png"), np.full((400, 400, 3), 128, np.uint8))
    (folder / "meta.txt").write_text("a.png\n")
    p = load_degradation(TRAIN)
    opt = {
        "dataroot_gt": str(folder),
        "meta_info": str(folder / "meta.txt"),
        "io_backend": {"type": "disk"},
        "use_hflip": False,
        "use_rot": False,
        "blur_kernel_size": p.kernel_size,
        "blur_kernel_size2": p.kernel_size,
        **{
            key: getattr(p, key)
            for key in (
                "kernel_list kernel_prob blur_sigma betag_range betap_range sinc_prob kernel_list2 kernel_prob2 "
                "blur_sigma2 betag_range2 betap_range2 sinc_prob2 final_sinc_prob"
            ).split()
        },
    }
    return bs_data.RealESRGANDataset(opt), p


def _kernel_scenarios():
    size = lambda i: (i + 0.5) / 8  # noqa: E731  (the i-th of the sizes 7, 9, ..., 21)
    rng = np.random.default_rng(0)
    for i in range(8):  # every size as a sinc, in the first and the second kernel; final sinc or pulse
        first = [size(i), 0.05, 0.7]  # 0.05 < sinc_prob: a sinc, its cut-off at 0.7 of its range
        second = [size(7 - i), 0.05, 0.3] if i % 2 else [size(7 - i), 0.5]  # a sinc or a mixed kernel
        final = [0.3, size((3 * i + 1) % 8), 0.6] if i < 6 else [0.95]  # final sinc or a pulse
        yield first + second + final
    for i in range(8):  # mixed first kernels of every size, second kernels sinc of every size
        yield [size(i), 0.5, size(i), 0.05, rng.random(), 0.3, size(i), rng.random()]


@pytest.mark.parametrize("draws", list(_kernel_scenarios()))
def test_kernels_equal_realesrgan_dataset(script, basicsr_dataset, draws):
    dataset, p = basicsr_dataset
    with script.run(draws):
        ours = sample_kernels(p, ScriptedGenerator(script))
        assert not script.values, "pisasr drew fewer values than the recipe"
    with script.run(draws):
        theirs = dataset[0]
        assert not script.values
    for key in ("kernel1", "kernel2", "sinc_kernel"):
        torch.testing.assert_close(ours[key], theirs[key].float(), rtol=0, atol=1e-6, msg=key)


# ----------------------------------------------------------------------------------------------------------------
# Degradation: Degrader vs RealESRGANModel.feed_data

KIND = {"up": 0.1, "down": 0.55, "keep": 0.95}  # the inverse CDF of both stages' resize_prob
YES, NO = 0.25, 0.75  # below / above a probability of 0.5 (noise is Gaussian, second blur, final order 1)

SCENARIOS = [  # resize kinds, Gaussian noise, second blur, order: 1 = resize + sinc then JPEG, 2 = JPEG first
    dict(kind1="up", gauss1=True, blur2=True, kind2="down", gauss2=False, order=1),
    dict(kind1="down", gauss1=False, blur2=False, kind2="up", gauss2=True, order=2),
    dict(kind1="keep", gauss1=True, blur2=True, kind2="keep", gauss2=False, order=2),
    dict(kind1="down", gauss1=True, blur2=False, kind2="down", gauss2=True, order=1),
    dict(kind1="up", gauss1=False, blur2=True, kind2="up", gauss2=False, order=2),
]


def _degradation_draws(kind1, gauss1, blur2, kind2, gauss2, order, batch, seed):
    free = iter(np.random.default_rng(seed).uniform(0.02, 0.98, 64))  # scales, modes, JPEG qualities
    nxt = lambda n=1: [next(free) for _ in range(n)]  # noqa: E731
    draws = [KIND[kind1], *(nxt() if kind1 != "keep" else []), *nxt(), YES if gauss1 else NO, *nxt(batch)]
    draws += [YES if blur2 else NO, KIND[kind2], *(nxt() if kind2 != "keep" else []), *nxt()]
    draws += [YES if gauss2 else NO, YES if order == 1 else NO, *nxt(batch + 1)]
    return draws


def _gt(batch=2, size=64):
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(
        torch.rand(batch, 3, 8, 8, generator=g), size=size, mode="bicubic"
    )
    return (smooth + 0.15 * torch.rand(batch, 3, size, size, generator=g)).clamp(0, 1)


def _kernels(p, batch, seed):
    rng = np.random.default_rng(seed)
    ks = []
    while len(ks) < batch:  # real blur in both stages and a real final sinc
        k = sample_kernels(p, rng)
        if k["sinc_kernel"].count_nonzero() > 1:
            ks.append(k)
    return {key: torch.stack([k[key] for k in ks]) for key in ks[0]}


def _trace(jpeger, steps, name):
    real = jpeger.forward

    def forward(x, quality):
        steps.append((f"{name} input", x.clone()))
        steps.append((f"{name} quality", quality.clone()))
        return real(x, quality=quality)

    jpeger.forward = forward


def _basicsr_lq(p, gt, kernels, steps):
    model = object.__new__(bs_model.RealESRGANModel)  # no networks, no CUDA: feed_data only
    model.is_train, model.device = True, torch.device("cpu")
    model.opt = {**asdict(p), "gt_size": gt.shape[-1], "high_order_degradation": True}
    model.jpeger = DiffJPEG(differentiable=False)
    _trace(model.jpeger, steps, "JPEG")
    # basicsr always degrades the USM-sharpened GT; without usm_sharpen the reference degrades the GT itself
    model.usm_sharpener = USMSharp() if p.usm_sharpen else (lambda x: x)
    model._dequeue_and_enqueue = lambda: None  # the training pair pool (CUDA) only reshuffles the batch
    model.feed_data({"gt": gt.clone(), **kernels})
    return model.lq


def _relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    "config, scenario",  # the sharpened GT (TEST_SET) in both final orders
    [(TRAIN, s) for s in SCENARIOS] + [(TEST_SET, SCENARIOS[0]), (TEST_SET, SCENARIOS[1])],
)
def test_lq_equals_realesrgan_feed_data(script, config, scenario):
    """Every stage (the input of each JPEG with its qualities, then the LQ) equals basicsr's, in both final orders.

    The same kernels and draws go to both; the tolerance allows float rounding (a few 8-bit steps flipped) and
    is far below what one changed JPEG quality, resize scale or filter makes (several % of the LQ's norm).
    """
    p, batch = load_degradation(config), 2
    gt, kernels = _gt(batch), _kernels(load_degradation(config), batch, seed=len(str(scenario)))
    draws = _degradation_draws(**scenario, batch=batch, seed=1)
    ours_steps, theirs_steps = [], []
    degrade = Degrader(p)
    _trace(degrade.jpeger, ours_steps, "JPEG")
    with script.run(draws):
        ours = degrade(gt, kernels, torch.Generator().manual_seed(0))
        assert not script.values, "pisasr drew fewer values than the recipe"
    with script.run(draws):
        theirs = _basicsr_lq(p, gt, kernels, theirs_steps)
        assert not script.values
    assert [n for n, _ in ours_steps] == [n for n, _ in theirs_steps] == ["JPEG input", "JPEG quality"] * 2
    for stage, ((name, a), (_, b)) in enumerate(zip(ours_steps, theirs_steps)):
        assert a.shape == b.shape, f"stage {stage // 2 + 1} {name}: {tuple(a.shape)} vs {tuple(b.shape)}"
        assert _relative(a, b) < 1e-5, f"stage {stage // 2 + 1} {name} differs from Real-ESRGAN's"
    assert ours.shape == theirs.shape == (batch, 3, 16, 16)
    assert _relative(ours, theirs) < 2e-3, "the LQ differs from Real-ESRGAN's"


def test_shipped_usm_settings():
    """PiSA-SR trains on the GT as it is (its Real-ESRGAN code has the USM line commented out); StableSR's
    DIV2K-Val pairs were made from the sharpened GT (use_usm: True)."""
    assert load_degradation(TRAIN).usm_sharpen is False
    assert load_degradation(TEST_SET).usm_sharpen is True


# ----------------------------------------------------------------------------------------------------------------
# Alignment of the model input with the GT


def _quiet(p):
    return replace(
        p,
        resize_prob=[0, 0, 1],
        resize_prob2=[0, 0, 1],
        second_blur_prob=0.0,
        jpeg_range=[95, 95],
        jpeg_range2=[95, 95],
        gaussian_noise_prob=1.0,
        noise_range=[0, 0],
        gaussian_noise_prob2=1.0,
        noise_range2=[0, 0],
        gray_noise_prob=0,
        gray_noise_prob2=0,
    )


@pytest.mark.parametrize("lq_upsample", ["bicubic", "random"])
def test_model_input_is_aligned_with_the_gt(lq_upsample):
    """A horizontal and a vertical ramp survive every resize of the recipe and its way back up (all of them
    reproduce a linear function away from the borders), so the model input minus the GT, divided by the slope,
    is how far the input is shifted: under half a pixel (8-bit rounding of the ramp is up to 0.3), per block of ``scale`` pixels (area upsampling
    repeats pixels), for every seed's resize modes. align_corners=True or an off-by-one crop shifts by >= 1."""

    p = _quiet(load_degradation(TRAIN))
    size, margin, slope = 128, 24, 0.8 / 128
    ramp = torch.arange(size, dtype=torch.float32) * slope + 0.1
    pulse = torch.zeros(1, 21, 21)
    pulse[:, 10, 10] = 1
    kernels = {"kernel1": pulse, "kernel2": pulse, "sinc_kernel": pulse}
    degrade = Degrader(p)
    degrade.jpeger = lambda x, quality: x  # JPEG moves nothing (its block error along a ramp only blurs this)
    for axis, gt in ((-1, ramp.expand(1, 3, size, size)), (-2, ramp[:, None].expand(1, 3, size, size))):
        for seed in range(4):
            x = training_input(degrade, gt, kernels, torch.Generator().manual_seed(seed), lq_upsample)
            assert x.shape == gt.shape
            error = (x - gt)[..., margin:-margin, margin:-margin].mean(dim=(0, 1, -2 if axis == -1 else -1))
            shift = error.reshape(-1, p.scale).mean(1) / slope  # one value per block of `scale` pixels
            assert shift.abs().max() < 0.5, f"model input shifted by {shift.abs().max():.2f} px (seed {seed})"
