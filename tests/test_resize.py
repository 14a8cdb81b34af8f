"""Resizing precision: 16-bit inputs are resized at 16-bit precision, not through 8 bits."""

import torch

from pisasr.inference.resize import resize_image


def test_sixteen_bit_resizing_keeps_sixteen_bit_precision():
    x = (torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(0)) * 65535).round() / 65535
    sixteen = resize_image(x, (40, 48), "pil", 16)
    floats = resize_image(x, (40, 48), "pil", None)
    assert torch.equal(sixteen, (sixteen * 65535).round() / 65535)  # on the 16-bit grid
    assert (sixteen - floats).abs().max() <= 0.5 / 65535 + 1e-6  # and the float result rounded to it
    eight = resize_image(x, (40, 48), "pil", 8)
    assert torch.equal(eight, (eight * 255).round() / 255) and (eight - floats).abs().max() > 1 / 1024
