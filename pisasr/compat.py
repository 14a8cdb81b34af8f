"""Compatibility shims for third-party packages, kept in one place.

basicsr 1.4.2 (the current PyPI release) does
``from torchvision.transforms.functional_tensor import rgb_to_grayscale`` in ``basicsr/data/degradations.py``;
torchvision removed that private module in 0.17, so ``import basicsr`` fails on any modern install.
``import_basicsr()`` registers an alias module that points at the public ``rgb_to_grayscale`` before basicsr is
imported. Import basicsr only through ``pisasr.compat`` (``from pisasr.compat import basicsr``).
"""

import sys
import types


def _install_functional_tensor_alias() -> None:
    name = "torchvision.transforms.functional_tensor"
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision: nothing to do)

        return
    except ImportError:
        pass
    from torchvision.transforms import functional

    alias = types.ModuleType(name)
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[name] = alias


_install_functional_tensor_alias()

import basicsr  # noqa: E402

__all__ = ["basicsr"]
