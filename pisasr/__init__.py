"""PiSA-SR: pixel- and semantic-level adjustable super-resolution with two LoRA adapters on Stable Diffusion."""

import logging as _logging

from pisasr import compat as _compat

_compat.install()  # basicsr 1.4.2 + modern torchvision: see pisasr/compat.py

# bitsandbytes (pulled in by pyiqa, imported by peft) logs a warning on every import on CPUs with AVX512-BF16
# about an optional kernel download; it is noise for this project, which never quantises.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

__version__ = "0.1.0"

__all__ = ["LambdaMap", "Pipeline", "RegionMap", "__version__", "protect"]


def __getattr__(name):
    # Lazy so that `import pisasr.config` does not pull in torch and diffusers.
    if name == "Pipeline":
        from pisasr.pipeline import Pipeline

        return Pipeline
    if name in ("LambdaMap", "RegionMap", "protect"):
        from pisasr import regions

        return getattr(regions, name)
    raise AttributeError(name)
