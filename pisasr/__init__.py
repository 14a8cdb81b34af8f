"""PiSA-SR: pixel- and semantic-level adjustable super-resolution with two LoRA adapters on Stable Diffusion."""

from pisasr import compat as _compat

_compat.install()  # basicsr 1.4.2 + modern torchvision: see pisasr/compat.py

__version__ = "0.1.0"

__all__ = ["LambdaMap", "Pipeline", "RegionMap", "__version__", "protect"]


def __getattr__(name):
    # Lazy so that `import pisasr.config` does not pull in torch and diffusers.
    if name == "Pipeline":
        from pisasr.inference.pipeline import Pipeline

        return Pipeline
    if name in ("LambdaMap", "RegionMap", "protect"):
        from pisasr import regions

        return getattr(regions, name)
    raise AttributeError(name)
