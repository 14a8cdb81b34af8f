"""The model input that ``Pipeline.prepare`` builds: the small-input enlargement rule and reflect padding."""

import numpy as np
import pytest
import torch

from pisasr.inference.pipeline import plan_geometry
from pisasr.io.images import LoadedImage


@pytest.mark.parametrize(
    "size, enlarged",
    [
        ((100, 200), (128, 256)),  # short side below 512/4: enlarged although the long side is not
        ((200, 100), (256, 128)),
        ((127, 300), (128, 302)),
        ((128, 300), None),  # exactly process_size/upscale: kept
        ((300, 600), None),
    ],
)
def test_the_short_side_decides_the_enlargement(size, enlarged):
    assert plan_geometry(*size, 4, 512)[0] == enlarged


def test_odd_sizes_are_reflect_padded_through_the_pipeline(pipe, monkeypatch):
    """A 9x11 input: 36x44 at 4x, padded by 4 rows and 4 columns of reflected pixels (not zeros, not edges)."""
    monkeypatch.setattr(pipe.options, "process_size", 16)  # no enlargement
    rgb = torch.rand(3, 9, 11, generator=torch.Generator().manual_seed(0))
    prepared = pipe.prepare(LoadedImage(rgb=rgb, alpha=None, grayscale=False, bit_depth=8))
    assert not prepared.enlarged and prepared.model_input.shape == (1, 3, 40, 48)
    inside = (prepared.reference[0] * 2 - 1).numpy()
    assert inside.shape == (3, 36, 44)
    expected = np.pad(inside, ((0, 0), (0, 4), (0, 4)), mode="reflect")  # numpy's reflect: edge not repeated
    np.testing.assert_array_equal(prepared.model_input[0].numpy(), expected)
    out = pipe.restore_prepared([prepared], [(1.0, 1.0)])[0][(1.0, 1.0)]
    assert out.shape == (3, 36, 44)  # cropped back
