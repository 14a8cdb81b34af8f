"""The interactive demo: pick the fidelity / detail balance after the fact.

``DemoEngine`` holds the logic and knows nothing of Gradio, so the tests drive it directly. An upload is encoded
and both UNet passes (``eps_full`` and ``eps_pix``) run once; the result is a ``Cached`` entry, kept in the
browser session's state. Moving a lambda slider only recombines the cached latents and decodes
(``Pipeline.render``), the same code the CLI runs, so a slider position gives the image ``Pipeline.restore``
gives for that pair. ``build_app`` wraps the engine in a Gradio Blocks app; ``scripts/demo.py`` serves it.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from pisasr.errors import ImageError, PiSAError
from pisasr.image_io import read_image, save_image, to_pil
from pisasr.pipeline import Latents, Pipeline, Prepared
from pisasr.resize import resize_image
from pisasr.sweep import contact_sheet, parse_sweep, sweep_name

PRESETS = {"default (1, 1)": (1.0, 1.0), "more fidelity": (1.0, 0.5), "more detail": (1.0, 1.5)}
BOTH_PASSES = [(1.0, 1.0), (0.0, 1.0)]  # a pair needing eps_full and one needing eps_pix


@dataclass
class Cached:
    """One uploaded image after its UNet passes: everything a slider move needs."""

    stem: str
    prepared: Prepared
    latents: Latents


class DemoEngine:
    def __init__(self, pipe: Pipeline, workdir: str | os.PathLike, max_upload_mb: float = 20.0):
        self.pipe, self.workdir, self.max_upload_mb = pipe, Path(workdir), max_upload_mb
        self.workdir.mkdir(parents=True, exist_ok=True)

    def load(self, path: str | os.PathLike, progress=None) -> Cached:
        """Read, check and pass an upload through encode and both UNet passes (the only expensive step)."""
        path = Path(path)
        size_mb = path.stat().st_size / 2**20 if path.is_file() else 0.0
        if size_mb > self.max_upload_mb:
            raise ImageError(
                f"{path.name}: {size_mb:.1f} MB is over the demo's upload limit of {self.max_upload_mb:g} MB"
            )
        image = read_image(path)
        if progress is not None:
            progress(0.1, desc="encoding and running the UNet passes")
        prepared = self.pipe.prepare(image)
        latents = self.pipe.predict([prepared], BOTH_PASSES)
        if progress is not None:
            progress(1.0, desc="done")
        return Cached(stem=path.stem, prepared=prepared, latents=latents)

    def render(self, cached: Cached, lambda_pix: float, lambda_sem: float) -> tuple[torch.Tensor, float]:
        """The output [C, H, W] in [0, 1] for one pair, from the cache; returns it and the seconds it took."""
        start = time.perf_counter()
        out = self.pipe.render(cached.latents, [cached.prepared], (float(lambda_pix), float(lambda_sem)))[0]
        return out, time.perf_counter() - start

    def before(self, cached: Cached) -> Image.Image:
        """The upsampled input at the output size (what the model started from)."""
        p = cached.prepared
        reference = resize_image(p.reference, p.geometry.out_size, self.pipe.options.resample, None)
        return to_pil(reference[0])

    def save(self, cached: Cached, image: torch.Tensor, lambda_pix: float, lambda_sem: float) -> Path:
        """The full-resolution PNG in the demo's temporary folder (16-bit and alpha kept, as the CLI)."""
        target = self.workdir / sweep_name(cached.stem, float(lambda_pix), float(lambda_sem))
        return save_image(image, target, cached.prepared.image.bit_depth)

    def sweep(self, cached: Cached, spec: str) -> Image.Image:
        pix_values, sem_values = parse_sweep(spec)
        results = {(p, s): self.render(cached, p, s)[0] for p in pix_values for s in sem_values}
        return contact_sheet(results, pix_values, sem_values)


def build_app(engine: DemoEngine, title: str = "PiSA-SR"):
    """A Gradio Blocks app over ``engine``; one request at a time (``queue(default_concurrency_limit=1)``)."""
    import gradio as gr

    def guarded(fn):
        @functools.wraps(fn)  # Gradio reads the signature (the gr.Progress default)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PiSAError as exc:
                raise gr.Error(str(exc)) from None

        return call

    @guarded
    def on_upload(file, lambda_pix, lambda_sem, progress=gr.Progress()):  # noqa: B008 (Gradio's API)
        if file is None:
            raise ImageError("no file uploaded")
        cached = engine.load(file, progress=progress)
        return (cached, *on_render(cached, lambda_pix, lambda_sem))

    @guarded
    def on_render(cached, lambda_pix, lambda_sem):
        if cached is None:
            return None, None, "Upload an image first."
        image, seconds = engine.render(cached, lambda_pix, lambda_sem)
        path = engine.save(cached, image, lambda_pix, lambda_sem)
        note = f"λ_pix {lambda_pix:g}, λ_sem {lambda_sem:g}: recombined and decoded in {seconds * 1e3:.0f} ms"
        return (engine.before(cached), to_pil(image)), str(path), note

    @guarded
    def on_sweep(cached, spec):
        if cached is None:
            raise ImageError("upload an image first")
        return engine.sweep(cached, spec)

    with gr.Blocks(title=title) as app:
        gr.Markdown(
            f"## {title}: pixel- and semantic-level adjustable super-resolution\n"
            "Upload an image; the UNet runs once. The sliders then only recombine and decode: "
            "λ_pix sets fidelity, λ_sem semantic detail."
        )
        cached = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="low-resolution image", file_types=["image"], type="filepath")
                lambda_pix = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="λ_pix (fidelity)")
                lambda_sem = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="λ_sem (semantic detail)")
                with gr.Row():
                    presets = {name: gr.Button(name, size="sm") for name in PRESETS}
                timing = gr.Markdown("Upload an image to start.")
                download = gr.File(label="full-resolution result")
            with gr.Column(scale=2):
                compare = gr.ImageSlider(label="before / after", type="pil")
        with gr.Accordion("sweep", open=False):
            spec = gr.Textbox("0.5,1.0,1.5:0,0.5,1.0,1.5", label="λ_pix values : λ_sem values")
            sweep_button = gr.Button("render sweep")
            sheet = gr.Image(label="contact sheet", type="pil")

        outputs = [compare, download, timing]
        upload.upload(on_upload, [upload, lambda_pix, lambda_sem], [cached, *outputs], api_name="load")
        for slider in (lambda_pix, lambda_sem):
            slider.release(on_render, [cached, lambda_pix, lambda_sem], outputs, api_name=False)
        gr.Button("render", visible=False).click(
            on_render, [cached, lambda_pix, lambda_sem], outputs, api_name="render"
        )
        for name, (lp, ls) in PRESETS.items():
            presets[name].click(
                lambda lp=lp, ls=ls: (lp, ls), None, [lambda_pix, lambda_sem], api_name=False
            ).then(on_render, [cached, lambda_pix, lambda_sem], outputs, api_name=False)
        sweep_button.click(on_sweep, [cached, spec], sheet, api_name="sweep")
    return app.queue(default_concurrency_limit=1)


def demo_workdir() -> Path:
    """A fresh temporary folder for everything the demo writes (results and Gradio's upload cache)."""
    return Path(tempfile.mkdtemp(prefix="pisasr-demo-"))
