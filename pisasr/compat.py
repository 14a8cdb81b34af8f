"""Compatibility shims for third-party packages, kept in one place.

basicsr 1.4.2 (the current PyPI release) does
``from torchvision.transforms.functional_tensor import rgb_to_grayscale`` in ``basicsr/data/degradations.py``;
torchvision removed that private module in 0.17, so ``import basicsr`` fails on any modern install.
``install()`` (run by ``import pisasr``) appends an import hook that serves that module name, when no real module
of that name exists, as an alias exposing the public ``torchvision.transforms.functional.rgb_to_grayscale``.
Being a hook, it imports nothing up front and works whatever the import order inside the package.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_ALIASED = "torchvision.transforms.functional_tensor"


class _FunctionalTensorAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # Appended after the standard finders: consulted only when the real module is absent.
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname == _ALIASED else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        from torchvision.transforms.functional import rgb_to_grayscale

        module.rgb_to_grayscale = rgb_to_grayscale


def install() -> None:
    if not any(isinstance(finder, _FunctionalTensorAlias) for finder in sys.meta_path):
        sys.meta_path.append(_FunctionalTensorAlias())
