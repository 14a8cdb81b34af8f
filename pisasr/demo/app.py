"""The demo's Gradio app over a ``DemoEngine`` (``pisasr/demo/engine.py``): upload (with a preview, or an example
photo), sliders and presets, the before/after comparison, download on demand, and the sweep panel.

A browser session holds only the key of its cached entry (``gr.State``); the entry itself lives in the engine's
least-recently-used cache and is dropped when the page is closed (``unload``) or a newer upload replaces it. Previews are lossless PNG; Gradio's own copies
of them are deleted after an hour (``delete_cache``).
"""

from __future__ import annotations

import functools

import gradio as gr

from pisasr.demo.engine import PRESETS, UNTRAINED_NOTE, DemoEngine, example_photos
from pisasr.demo.regions_panel import regions_panel
from pisasr.errors import ImageError, PiSAError

BEFORE_AFTER = "◀ before: the upload, bicubic-upsampled  |  after: PiSA-SR ▶"
GRADIO_CACHE_PRUNE = (900, 3600)  # every 15 minutes, delete Gradio's cached files older than an hour


def header(engine: DemoEngine, title: str) -> str:
    text = (
        f"## {title}: pixel- and semantic-level adjustable super-resolution\n"
        "Upload an image; the UNet runs once. The sliders then only recombine and decode: "
        "λ_pix sets fidelity, λ_sem semantic detail."
    )
    return text + (f"\n\n**Note: {UNTRAINED_NOTE}.**" if engine.untrained else "")


def build_app(engine: DemoEngine, title: str = "PiSA-SR"):
    """A Gradio Blocks app over ``engine``; one request at a time (``queue(default_concurrency_limit=1)``)."""

    def guarded(fn):
        @functools.wraps(fn)  # Gradio reads the signature (the gr.Progress default)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PiSAError as exc:
                raise gr.Error(str(exc)) from None

        return call

    @guarded
    def on_preview(file):
        if file is None:
            return None, "Upload an image to start."
        return engine.thumbnail(file), "Encoding and running the UNet passes..."

    open_sessions: dict[str, str] = {}  # Gradio session -> its entry's key, to drop it when the page closes

    @guarded
    def on_load(file, key, lambda_pix, lambda_sem, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        if file is None:
            return key, None, "Upload an image to start."
        cached = engine.load(file, progress=progress)
        engine.drop(key)  # this session's previous image
        for session, held in list(open_sessions.items()):
            if held not in engine.cache:
                del open_sessions[session]
        if request is not None and request.session_hash:
            open_sessions[request.session_hash] = cached.key
        return (cached.key, *on_render(cached.key, lambda_pix, lambda_sem))

    def on_close(request: gr.Request):
        engine.drop(open_sessions.pop(request.session_hash, None))

    @guarded
    def on_render(key, lambda_pix, lambda_sem):
        if key is None:
            return None, "Upload an image first."
        cached = engine.get(key)
        image, seconds = engine.render(cached, lambda_pix, lambda_sem)
        note = f"λ_pix {lambda_pix:g}, λ_sem {lambda_sem:g}: recombined and decoded in {seconds * 1e3:.0f} ms"
        return (cached.before, engine.preview(image)), note

    @guarded
    def on_download(key, lambda_pix, lambda_sem):
        if key is None:
            raise ImageError("upload an image first")
        return str(engine.download(engine.get(key), lambda_pix, lambda_sem))

    @guarded
    def on_sweep(key, spec):
        if key is None:
            raise ImageError("upload an image first")
        return engine.sweep(engine.get(key), spec)

    with gr.Blocks(title=title, delete_cache=GRADIO_CACHE_PRUNE) as app:
        gr.Markdown(header(engine, title))
        key = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="low-resolution image", file_types=["image"], type="filepath")
                preview = gr.Image(
                    label="your upload",
                    type="pil",
                    format="png",
                    image_mode=None,
                    interactive=False,
                    height=160,
                )
                photos = example_photos()
                if photos:
                    gr.Examples([[str(p)] for p in photos], inputs=[upload], label="or an example photo")
                lambda_pix = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="λ_pix (fidelity)")
                lambda_sem = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="λ_sem (semantic detail)")
                with gr.Row():
                    presets = {name: gr.Button(name, size="sm") for name in PRESETS}
                timing = gr.Markdown("Upload an image to start.")
                download_button = gr.Button("full-resolution PNG", size="sm")
                download = gr.File(label="full-resolution result (PNG; 16-bit and alpha kept)")
            with gr.Column(scale=2):
                compare = gr.ImageSlider(label=BEFORE_AFTER, type="pil", format="png", image_mode=None)
        with gr.Accordion("sweep", open=False):
            spec = gr.Textbox("0.5,1.0,1.5:0,0.5,1.0,1.5", label="λ_pix values : λ_sem values")
            sweep_button = gr.Button("render sweep")
            sheet = gr.Image(label="contact sheet", type="pil", format="png")

        outputs = [compare, timing]
        loaded = upload.change(on_preview, [upload], [preview, timing], api_name="preview").success(
            on_load, [upload, key, lambda_pix, lambda_sem], [key, *outputs], api_name="load"
        )
        for slider in (lambda_pix, lambda_sem):
            slider.release(on_render, [key, lambda_pix, lambda_sem], outputs, api_name=False)
        gr.Button("render", visible=False).click(
            on_render, [key, lambda_pix, lambda_sem], outputs, api_name="render"
        )
        for name, (lp, ls) in PRESETS.items():
            presets[name].click(
                lambda lp=lp, ls=ls: (lp, ls), None, [lambda_pix, lambda_sem], api_name=False
            ).then(on_render, [key, lambda_pix, lambda_sem], outputs, api_name=False)
        download_button.click(on_download, [key, lambda_pix, lambda_sem], download, api_name="download")
        sweep_button.click(on_sweep, [key, spec], sheet, api_name="sweep")
        app.unload(on_close)
        regions_panel(engine, key, loaded)
    return app.queue(default_concurrency_limit=1)
