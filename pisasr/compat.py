"""Compatibility shims for third-party packages, kept in one place.

Two modules that current releases of our dependencies still import no longer exist:

* ``torchvision.transforms.functional_tensor``: basicsr 1.4.2 (the current PyPI release) imports
  ``rgb_to_grayscale`` from it; torchvision removed that private module in 0.17, so ``import basicsr`` fails.
* ``pkg_resources``: openai-clip (used by pyiqa's CLIP-IQA) does ``from pkg_resources import packaging``;
  setuptools 81 removed ``pkg_resources``.

``install()`` (run by ``import pisasr``) appends an import hook that serves each name, *only when no real module
of that name exists*, as a small alias of the public replacement. Being a hook, it imports nothing up front and
works whatever the import order inside the package.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types


def _functional_tensor(module: types.ModuleType) -> None:
    from torchvision.transforms.functional import rgb_to_grayscale

    module.rgb_to_grayscale = rgb_to_grayscale


def _pkg_resources(module: types.ModuleType) -> None:
    import packaging.version

    module.packaging = packaging


ALIASES = {
    "torchvision.transforms.functional_tensor": _functional_tensor,
    "pkg_resources": _pkg_resources,
}


class _RemovedModuleAliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # Appended after the standard finders: consulted only when the real module is absent.
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in ALIASES else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        ALIASES[module.__name__](module)


def install() -> None:
    if not any(isinstance(finder, _RemovedModuleAliases) for finder in sys.meta_path):
        sys.meta_path.append(_RemovedModuleAliases())
