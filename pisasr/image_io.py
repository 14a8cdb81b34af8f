"""Moved to ``pisasr.io.images``; this alias keeps ``import pisasr.image_io`` working for one release."""

import importlib
import sys
import warnings

warnings.warn(
    "pisasr.image_io moved to pisasr.io.images",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("pisasr.io.images")
