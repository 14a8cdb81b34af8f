"""Colour fixes against independent implementations: which image gives the detail and which the colour."""

import torch
import torch.nn.functional as F

from pisasr.inference.color import adain, apply_color_fix


def _official_wavelet_decomposition(image, levels=5):
    """StableSR's / PiSA-SR's wavelet_color_fix.py: high frequencies summed level by level, and the last low."""
    kernel = torch.tensor([[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]])
    kernel = kernel[None, None].repeat(image.shape[1], 1, 1, 1)
    high = torch.zeros_like(image)
    for i in range(levels):
        radius = 2**i
        low = F.conv2d(
            F.pad(image, (radius,) * 4, mode="replicate"), kernel, groups=image.shape[1], dilation=radius
        )
        high += image - low
        image = low
    return high, low


def _images():
    g = torch.Generator().manual_seed(0)
    output = 0.2 + 0.1 * torch.rand(1, 3, 48, 40, generator=g)  # detailed, colour off
    reference = F.interpolate(torch.rand(1, 3, 6, 5, generator=g), size=(48, 40), mode="bilinear")  # smooth
    return output, reference


def test_wavelet_keeps_the_outputs_detail_and_the_references_colour():
    output, reference = _images()
    fixed = apply_color_fix("wavelet", output, reference)
    expected = _official_wavelet_decomposition(output)[0] + _official_wavelet_decomposition(reference)[1]
    torch.testing.assert_close(fixed, expected, atol=1e-5, rtol=0)
    # the colour (mean) is the reference's, the fine detail the output's
    assert abs(fixed.mean() - reference.mean()) < 0.02 < abs(output.mean() - reference.mean())
    detail = lambda x: x - F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # noqa: E731
    torch.testing.assert_close(
        detail(fixed)[..., 4:-4, 4:-4], detail(output)[..., 4:-4, 4:-4], atol=0.02, rtol=0
    )


def test_adain_takes_mean_and_std_from_the_reference():
    output, reference = _images()
    fixed = adain(output, reference)
    torch.testing.assert_close(fixed.mean((2, 3)), reference.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(fixed.std((2, 3)), reference.std((2, 3)), atol=0, rtol=0.02)  # eps: 1e-5
    normalised = (output - output.mean((2, 3), keepdim=True)) / output.std((2, 3), keepdim=True)
    torch.testing.assert_close(  # the structure is the output's
        (fixed - fixed.mean((2, 3), keepdim=True)) / fixed.std((2, 3), keepdim=True),
        normalised,
        atol=1e-3,
        rtol=0,
    )
    assert torch.equal(apply_color_fix("none", output, reference), output)
