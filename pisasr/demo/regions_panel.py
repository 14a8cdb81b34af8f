"""The demo's "regions" mode: paint a region on the image, give it one (lambda_pix, lambda_sem) pair and the rest
another, and re-render from the cached latents (``Pipeline.render`` with a ``RegionMap``: no UNet rerun).

The engine half (``region_spec``, ``render_regions``, ``detected_mask``, ``download_regions``) knows nothing of
Gradio and is what the tests drive; ``regions_panel`` adds the Gradio controls to the demo app. The painted mask
is taken at the preview's size (the output's aspect ratio) and goes through the same map path as the API's.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pisasr.demo.engine import Cached, DemoEngine, check_lambdas
from pisasr.errors import ConfigError, ImageError, PiSAError
from pisasr.inference.sweep import format_lambda
from pisasr.io.files import atomic_write, atomic_write_text
from pisasr.io.images import save_image
from pisasr.regions.maps import RegionMap, Spec

Pair = tuple[float, float]
DEFAULT_INSIDE, DEFAULT_OUTSIDE, DEFAULT_FEATHER = (1.0, 0.5), (1.0, 1.0), 16.0
PAINT = (255, 64, 64)  # how detected faces and text are drawn on the editor's layer


def editor_mask(value) -> np.ndarray | None:
    """A Gradio ImageEditor value (``{"background", "layers", "composite"}``, numpy or PIL) -> H x W mask in
    [0, 1]: 1 wherever any layer is painted (alpha > 0); None when nothing is painted."""
    if not value or not value.get("layers"):
        return None
    mask = None
    for layer in value["layers"]:
        array = np.asarray(layer)
        if array.ndim != 3 or array.shape[2] != 4:
            continue
        painted = array[:, :, 3] > 0
        mask = painted if mask is None else mask | painted
    if mask is None or not mask.any():
        return None
    return mask.astype(np.float64)


def _check(inside: Pair, outside: Pair, feather: float) -> None:
    check_lambdas(**{"inside λ_pix": inside[0], "inside λ_sem": inside[1]})
    check_lambdas(**{"outside λ_pix": outside[0], "outside λ_sem": outside[1]})
    if not (math.isfinite(float(feather)) and feather >= 0):
        raise ConfigError(f"feather {feather}: must be a finite number >= 0")


def region_spec(mask: np.ndarray | None, inside: Pair, outside: Pair, feather: float) -> Spec:
    """The painted region at ``inside``, the rest at ``outside``; nothing painted is the scalar ``outside``."""
    inside, outside = (float(inside[0]), float(inside[1])), (float(outside[0]), float(outside[1]))
    _check(inside, outside, feather)
    if mask is None or not np.any(mask):
        return outside
    return RegionMap(mask, inside, outside, float(feather), name="painted mask")


def render_regions(
    engine: DemoEngine, cached: Cached, mask: np.ndarray | None, inside: Pair, outside: Pair, feather: float
) -> tuple[torch.Tensor, float]:
    """The output [C, H, W] in [0, 1] with the painted region at ``inside``, from the cache, and the seconds."""
    spec = region_spec(mask, inside, outside, feather)
    start = time.perf_counter()
    out = engine.pipe.render(cached.latents, [cached.prepared], spec)[0]
    return out, time.perf_counter() - start


def faces_mask(cached: Cached) -> np.ndarray:
    """Detected faces on the preview (pisasr.regions.faces), as a mask of the preview's size."""
    from pisasr.regions.faces import face_mask

    return face_mask(cached.before)


def text_mask(cached: Cached) -> np.ndarray:
    """Detected text on the preview (pisasr.regions.text: each line grown by a quarter of its height), as a mask
    of the preview's size; none where the detector skips the image. Needs the ``text`` extra."""
    from pisasr.regions.detection import DetectionSkipped
    from pisasr.regions.text import text_mask as detect_text

    try:
        return detect_text(cached.before).astype(np.float64)
    except DetectionSkipped:
        return np.zeros(cached.before.size[::-1])


def detected_mask(cached: Cached, faces: bool, text: bool) -> np.ndarray:
    """The union of the kinds asked for, at the preview's size (all zero when none is asked for)."""
    mask = np.zeros(cached.before.size[::-1])
    if faces:
        mask = np.maximum(mask, faces_mask(cached))
    if text:
        mask = np.maximum(mask, text_mask(cached))
    return mask


def status(mask: np.ndarray | None, inside: Pair, outside: Pair, feather: float, seconds: float) -> str:
    if mask is None or not np.any(mask):
        return f"no region painted: λ ({outside[0]:g}, {outside[1]:g}) everywhere, decoded in {seconds * 1e3:.0f} ms"
    return (
        f"painted region ({100 * float(np.mean(mask > 0)):.1f}% of the image) at λ ({inside[0]:g}, {inside[1]:g}), "
        f"the rest at ({outside[0]:g}, {outside[1]:g}), feather {feather:g} px: recombined and decoded in "
        f"{seconds * 1e3:.0f} ms"
    )


def download_regions(
    engine: DemoEngine, cached: Cached, mask: np.ndarray | None, inside: Pair, outside: Pair, feather: float
) -> list[Path]:
    """The full-resolution PNG, the mask (as painted) and ``regions.json`` (pairs, feather) in the entry's
    folder, replacing its previous download."""
    image, _ = render_regions(engine, cached, mask, inside, outside, feather)
    folder = engine.workdir / cached.key
    shutil.rmtree(folder, ignore_errors=True)
    name = f"{cached.stem}_regions_in{format_lambda(inside[0])}_{format_lambda(inside[1])}"
    name += f"_out{format_lambda(outside[0])}_{format_lambda(outside[1])}"
    files = [save_image(image, folder / f"{name}.png", cached.prepared.image.bit_depth)]
    record = {"inside": list(inside), "outside": list(outside), "feather": feather, "mask": None}
    if mask is not None and np.any(mask):
        mask_image = Image.fromarray((np.asarray(mask) * 255).round().astype(np.uint8), "L")
        files.append(
            atomic_write(folder / f"{name}_mask.png", lambda tmp: mask_image.save(tmp, format="PNG"))
        )
        record["mask"] = files[-1].name
    files.append(atomic_write_text(folder / f"{name}.json", json.dumps(record, indent=2)))
    return files


# -- Gradio ------------------------------------------------------------------------------------------------------
def _editor_value(cached: Cached, mask: np.ndarray | None = None) -> dict:
    background = np.asarray(cached.before.convert("RGB"))
    layer = np.zeros((*background.shape[:2], 4), dtype=np.uint8)
    if mask is not None:
        layer[mask > 0] = (*PAINT, 255)
    composite = background.copy()
    if mask is not None:
        composite[mask > 0] = PAINT
    return {"background": background, "layers": [layer], "composite": composite}


def regions_panel(engine: DemoEngine, key, loaded) -> None:
    """The "regions" accordion, inside the app's Blocks; ``key`` is the session's cache key (``gr.State``) and
    ``loaded`` the upload event, after which the editor shows the new image."""
    import gradio as gr

    def guarded(fn):
        @functools.wraps(fn)  # Gradio reads the signature
        def call(*args):
            try:
                return fn(*args)
            except PiSAError as exc:
                raise gr.Error(str(exc)) from None

        return call

    def cached_for(key_value) -> Cached:
        if key_value is None:
            raise ImageError("upload an image first")
        return engine.get(key_value)

    @guarded
    def on_new_image(key_value):
        return None if key_value is None else _editor_value(engine.get(key_value))

    @guarded
    def on_render(key_value, value, ip, is_, op, os_, feather):
        cached = cached_for(key_value)
        mask = editor_mask(value)
        image, seconds = render_regions(engine, cached, mask, (ip, is_), (op, os_), feather)
        return engine.preview(image), status(mask, (ip, is_), (op, os_), feather, seconds)

    @guarded
    def on_detect(key_value, faces, text):
        cached = cached_for(key_value)
        if not (faces or text):
            raise ConfigError("tick faces, text or both, then detect")
        mask = detected_mask(cached, faces, text)
        if not mask.any():
            gr.Info("no " + " or ".join(["face"] * faces + ["text"] * text) + " found")
        return _editor_value(cached, mask if mask.any() else None)

    @guarded
    def on_download(key_value, value, ip, is_, op, os_, feather):
        files = download_regions(
            engine, cached_for(key_value), editor_mask(value), (ip, is_), (op, os_), feather
        )
        return [str(f) for f in files]

    with gr.Accordion("regions: one pair for a painted region, another for the rest", open=False):
        with gr.Row():
            with gr.Column(scale=1):
                editor = gr.ImageEditor(
                    label="paint the region (brush)",
                    type="numpy",
                    image_mode="RGBA",
                    format="png",
                    sources=(),
                    transforms=(),
                    layers=False,
                    brush=gr.Brush(colors=["#ff4040"], color_mode="fixed", default_size=24),
                )
                with gr.Row():
                    faces_box = gr.Checkbox(value=True, label="faces", min_width=80)
                    text_box = gr.Checkbox(value=False, label="text (signs, captions)", min_width=80)
                    detect_button = gr.Button("detect", size="sm")
            with gr.Column(scale=1):
                sliders = [
                    gr.Slider(0.0, 2.0, value=DEFAULT_INSIDE[0], step=0.05, label="region λ_pix"),
                    gr.Slider(0.0, 2.0, value=DEFAULT_INSIDE[1], step=0.05, label="region λ_sem"),
                    gr.Slider(0.0, 2.0, value=DEFAULT_OUTSIDE[0], step=0.05, label="rest λ_pix"),
                    gr.Slider(0.0, 2.0, value=DEFAULT_OUTSIDE[1], step=0.05, label="rest λ_sem"),
                    gr.Slider(0, 64, value=DEFAULT_FEATHER, step=1, label="feather (output pixels)"),
                ]
                render_button = gr.Button("render regions")
                note = gr.Markdown("Upload an image, paint a region, then render.")
                download_button = gr.Button("full-resolution PNG + mask", size="sm")
                files = gr.File(label="result, mask and pairs", file_count="multiple")
            with gr.Column(scale=2):
                result = gr.Image(label="result (regions)", type="pil", format="png", interactive=False)
        inputs = [key, editor, *sliders]
        loaded.then(on_new_image, [key], [editor], api_name=False)
        render_button.click(on_render, inputs, [result, note], api_name="render_regions")
        editor.input(on_render, inputs, [result, note], api_name=False, trigger_mode="always_last")
        for slider in sliders:
            slider.release(on_render, inputs, [result, note], api_name=False)
        detect_button.click(on_detect, [key, faces_box, text_box], [editor], api_name="detect_regions").then(
            on_render, inputs, [result, note], api_name=False
        )
        download_button.click(on_download, inputs, [files], api_name="download_regions")
