"""Inference: the one ``Pipeline`` (prepare -> predict -> render) and what runs around it: latent tiling, colour
fix, resizing, ``torch.compile``, lambda sweeps, the batch runner and its outputs (names, formats, ``run.json``)."""

from pisasr.inference.pipeline import Pipeline

__all__ = ["Pipeline"]
