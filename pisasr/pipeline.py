"""Moved to ``pisasr.inference.pipeline``; this alias keeps ``import pisasr.pipeline`` working for one release."""

import importlib
import sys
import warnings

warnings.warn(
    "pisasr.pipeline moved to pisasr.inference.pipeline (Pipeline: from pisasr import Pipeline)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("pisasr.inference.pipeline")
