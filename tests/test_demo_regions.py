"""The demo's regions mode: a painted mask renders from the cached latents as the API renders it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import image_file
from PIL import Image

from pisasr.demo.engine import DemoEngine, DemoLimits
from pisasr.demo.regions_panel import (
    detected_mask,
    download_regions,
    editor_mask,
    faces_mask,
    render_regions,
    status,
)
from pisasr.errors import ConfigError
from pisasr.inference.pipeline import Pipeline
from pisasr.io.images import read_image
from pisasr.regions.maps import RegionMap

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
INSIDE, OUTSIDE = (1.0, 0.3), (0.6, 1.4)


@pytest.fixture(scope="module")
def engine(tiny_base, trained_checkpoint, tmp_path_factory):
    pipe = Pipeline.from_pretrained(tiny_base, trained_checkpoint, device="cpu", process_size=64)
    return DemoEngine(pipe, tmp_path_factory.mktemp("demo"), DemoLimits(max_pixels=200_000))


@pytest.fixture(scope="module")
def photo(engine, tmp_path_factory):
    path = image_file(tmp_path_factory.mktemp("photo") / "photo.png", (24, 20))
    return path, engine.load(path)


def _painted(shape, columns):
    """An ImageEditor value whose one layer is painted (alpha 255) on the left ``columns``."""
    layer = np.full((*shape, 4), (255, 255, 255, 0), dtype=np.uint8)  # unpainted: transparent, any colour
    layer[:, :columns] = (255, 64, 64, 255)
    return {"background": np.zeros((*shape, 3), np.uint8), "layers": [layer], "composite": None}


def test_painted_region_renders_as_the_api_does(engine, photo):
    path, cached = photo
    assert cached.before.size == (96, 80)  # the editor shows the preview: the output's size here
    mask = editor_mask(_painted((80, 96), 40))
    before = dict(engine.pipe.calls)
    ours, _ = render_regions(engine, cached, mask, INSIDE, OUTSIDE, 8)
    assert engine.pipe.calls["unet"] == before["unet"] and engine.pipe.calls["encode"] == before["encode"]
    region = RegionMap(mask, INSIDE, OUTSIDE, feather=8)
    assert torch.equal(ours, engine.pipe.restore(read_image(path), [region])[region])


def test_nothing_or_everything_painted_is_the_scalar_render(engine, photo):
    _, cached = photo
    assert editor_mask(_painted((80, 96), 0)) is None and editor_mask(None) is None
    outside, _ = engine.render(cached, *OUTSIDE)
    inside, _ = engine.render(cached, *INSIDE)
    assert torch.equal(render_regions(engine, cached, None, INSIDE, OUTSIDE, 8)[0], outside)
    everything = editor_mask(_painted((80, 96), 96))
    assert torch.equal(render_regions(engine, cached, everything, INSIDE, OUTSIDE, 8)[0], inside)
    with pytest.raises(ConfigError, match="inside λ_sem nan"):
        render_regions(engine, cached, everything, (1.0, float("nan")), OUTSIDE, 8)


def test_status_and_download_carry_the_mask_and_both_pairs(engine, photo):
    _, cached = photo
    mask = editor_mask(_painted((80, 96), 24))
    note = status(mask, INSIDE, OUTSIDE, 8, 0.05)
    assert "25.0% of the image" in note and "λ (1, 0.3)" in note and "the rest at (0.6, 1.4)" in note
    files = download_regions(engine, cached, mask, INSIDE, OUTSIDE, 8)
    assert [f.suffix for f in files] == [".png", ".png", ".json"]
    assert all(f.parent == engine.workdir / cached.key for f in files)
    record = json.loads(files[2].read_text())
    assert record == {"inside": [1.0, 0.3], "outside": [0.6, 1.4], "feather": 8, "mask": files[1].name}
    assert np.array_equal(np.asarray(Image.open(files[1])) > 0, mask > 0)


def test_detect_faces_fills_the_mask_on_the_face(engine):
    cached = engine.load(EXAMPLES / "astronaut.png")
    mask = faces_mask(cached)
    assert mask.shape == (512, 512) and mask[60:170, 170:290].mean() > 0.9 and mask.mean() < 0.2


def test_detect_text_fills_the_mask_on_the_sign_and_adds_to_faces(engine, tmp_path):
    from PIL import ImageDraw, ImageFont

    sign = Image.new("RGB", (128, 96), (30, 60, 140))
    draw = ImageDraw.Draw(sign)
    font = ImageFont.load_default(size=22)
    draw.text((16, 30), "EXIT 42", font=font, fill="white")
    left, top, right, bottom = draw.textbbox((16, 30), "EXIT 42", font=font)
    sign.save(tmp_path / "sign.png")
    cached = engine.load(tmp_path / "sign.png")
    assert cached.before.size == (512, 384)
    text = detected_mask(cached, faces=False, text=True)
    assert (
        text.shape == (384, 512)
        and text[4 * top : 4 * bottom, 4 * left : 4 * right].all()
        and text.mean() < 0.4
    )
    assert not detected_mask(cached, faces=True, text=False).any()  # no face on the sign
    assert np.array_equal(detected_mask(cached, faces=True, text=True), text)
    assert not detected_mask(cached, faces=False, text=False).any()


def test_app_has_the_regions_panel(engine):
    from pisasr.demo.app import build_app

    app = build_app(engine)
    names = {fn.api_name for fn in app.fns.values()}
    assert {"render_regions", "detect_regions", "download_regions"} <= names
