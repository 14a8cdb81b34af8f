"""The demo: ``DemoEngine`` (``engine``: upload limits, LRU cache of latents, sliders, download), its Gradio app
(``app``, which imports gradio) and the regions panel (``regions_panel``)."""
