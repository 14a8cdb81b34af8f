import numpy as np
import pytest
import torch

from pisasr.data.degradation import Degrader, load_degradation, model_input, sample_kernels
from pisasr.errors import ConfigError

CONFIG = "configs/degradation/realesrgan.yaml"


@pytest.fixture(scope="module")
def params():
    return load_degradation(CONFIG)


def _batch(params, n=4, size=64, seed=0):
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    gt = torch.nn.functional.interpolate(
        torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="bicubic"
    ).clamp(0, 1)
    kernels = [sample_kernels(params, rng) for _ in range(n)]
    return gt, {k: torch.stack([s[k] for s in kernels]) for k in kernels[0]}


def test_official_values_are_shipped(params):
    assert params.scale == 4 and params.jpeg_range == [60, 95] and params.jpeg_range2 == [60, 100]
    assert params.kernel_prob == [0.45, 0.25, 0.12, 0.03, 0.12, 0.03] and params.final_sinc_prob == 0.8
    assert params.blur_sigma2 == [0.2, 1.5] and params.resize_prob2 == [0.3, 0.4, 0.3]


def test_shapes_range_and_model_input(params):
    gt, kernels = _batch(params)
    lq = Degrader(params)(gt, kernels, torch.Generator().manual_seed(1))
    assert lq.shape == (4, 3, 16, 16) and lq.min() >= 0 and lq.max() <= 1
    assert torch.equal(lq, (lq * 255).round() / 255)  # quantised like a saved image
    assert model_input(lq, (64, 64)).shape == gt.shape
    for k in kernels.values():
        assert k.shape == (4, 21, 21)
        torch.testing.assert_close(k.sum((1, 2)), torch.ones(4), atol=1e-4, rtol=0)


def test_same_seed_same_batch_and_global_rng_untouched(params):
    gt, kernels = _batch(params)
    torch.manual_seed(123)
    np.random.seed(123)
    marker_torch, marker_np = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    degrade = Degrader(params)
    a = degrade(gt, kernels, torch.Generator().manual_seed(7))
    b = degrade(gt, kernels, torch.Generator().manual_seed(7))
    c = degrade(gt, kernels, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.rand(1), marker_torch) and np.random.rand() == marker_np
    k1 = sample_kernels(params, np.random.default_rng(3))
    k2 = sample_kernels(params, np.random.default_rng(3))
    assert all(torch.equal(k1[k], k2[k]) for k in k1)


def test_configured_probabilities_are_respected(params):
    """Over many samples: the share of sinc-filtered final kernels and the JPEG quality range."""
    rng = np.random.default_rng(0)
    pulses = sum(int(sample_kernels(params, rng)["sinc_kernel"].count_nonzero() == 1) for _ in range(600))
    assert abs(pulses / 600 - (1 - params.final_sinc_prob)) < 0.05

    degrade = Degrader(params)
    qualities = []
    original = degrade.jpeger.forward
    degrade.jpeger.forward = lambda x, quality: (
        qualities.append(quality.clone()),
        original(x, quality=quality),
    )[1]
    gt, kernels = _batch(params, n=8, size=64)
    for seed in range(10):
        degrade(gt, kernels, torch.Generator().manual_seed(seed))
    first, second = torch.cat(qualities[0::2]), torch.cat(qualities[1::2])
    assert first.min() >= 60 and first.max() <= 95 and second.min() >= 60 and second.max() <= 100
    assert first.max() > 85 and first.min() < 70  # the range is used, not one value


def test_noise_probability_is_respected(params):
    """gaussian_noise_prob=1 with a huge sigma vs 0 (poisson at the smallest scale): clearly different noise."""
    from dataclasses import replace

    gt = torch.full((16, 3, 64, 64), 0.5)
    kernels = _pulses()
    loud = replace(
        _quiet(params),
        gaussian_noise_prob=1.0,
        noise_range=[50, 50],
        gaussian_noise_prob2=0.0,
        poisson_scale_range2=[0.05, 0.05],
    )
    none = replace(loud, gaussian_noise_prob=0.0, poisson_scale_range=[0.05, 0.05])
    std_loud = Degrader(loud)(gt, kernels, torch.Generator().manual_seed(0)).std()
    std_none = Degrader(none)(gt, kernels, torch.Generator().manual_seed(0)).std()
    assert std_loud > 3 * std_none


def test_bad_degradation_config(tmp_path):
    bad = tmp_path / "d.yaml"
    bad.write_text("resize_prob: [0.5, 0.2, 0.1]\n")
    with pytest.raises(ConfigError, match="resize_prob must sum to 1"):
        load_degradation(bad)
    bad.write_text("jpeg_rnage: [1, 2]\n")
    with pytest.raises(ConfigError, match="jpeg_rnage"):
        load_degradation(bad)


def _quiet(params):
    """No resizing, no second blur, light JPEG, and the least noise each order can have."""
    from dataclasses import replace

    return replace(
        params,
        resize_prob=[0, 0, 1],
        resize_prob2=[0, 0, 1],
        second_blur_prob=0.0,
        jpeg_range=[95, 95],
        jpeg_range2=[95, 95],
        gaussian_noise_prob=0.0,
        poisson_scale_range=[0.05, 0.05],
        gaussian_noise_prob2=0.0,
        poisson_scale_range2=[0.05, 0.05],
    )


def _pulses(n=16):
    pulse = torch.zeros(n, 21, 21)
    pulse[:, 10, 10] = 1
    return {"kernel1": pulse, "kernel2": pulse, "sinc_kernel": pulse}


def test_second_order_noise_is_added(params):
    """Loud Gaussian noise in the second order only: the LQ of a flat image is clearly noisy."""
    from dataclasses import replace

    gt = torch.full((16, 3, 64, 64), 0.5)
    quiet = _quiet(params)
    loud = replace(quiet, gaussian_noise_prob2=1.0, noise_range2=[50, 50])
    std_quiet = Degrader(quiet)(gt, _pulses(), torch.Generator().manual_seed(0)).std()
    std_loud = Degrader(loud)(gt, _pulses(), torch.Generator().manual_seed(0)).std()
    assert std_loud > 3 * std_quiet


def test_final_stage_runs_in_both_orders(params, monkeypatch):
    """Real-ESRGAN's last stage: resize + sinc then JPEG, or JPEG then resize + sinc, each half of the time."""
    import pisasr.data.degradation as degradation

    degrade = Degrader(params)
    calls = []
    real_filter, real_jpeg = degradation.filter2D, degrade._jpeg
    sinc = _batch(params, n=2)[1]["sinc_kernel"]

    def spy_filter(x, kernel):
        calls.append("sinc" if torch.equal(kernel, sinc) else "blur")
        return real_filter(x, kernel)

    monkeypatch.setattr(degradation, "filter2D", spy_filter)
    monkeypatch.setattr(degrade, "_jpeg", lambda *a: (calls.append("jpeg"), real_jpeg(*a))[1])
    gt, kernels = _batch(params, n=2)
    orders = []
    for seed in range(40):
        calls.clear()
        degrade(gt, kernels, torch.Generator().manual_seed(seed))
        orders.append(tuple(c for c in calls if c != "blur")[-2:])  # the final stage's two steps
    assert set(orders) == {("sinc", "jpeg"), ("jpeg", "sinc")}
    assert 10 <= orders.count(("sinc", "jpeg")) <= 30
