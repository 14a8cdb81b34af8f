"""Determinism for code that draws from global RNGs (basicsr's degradation primitives do).

Each context seeds the global generator from *our* generator for its duration and restores the previous state
afterwards, so results depend only on the generator passed in and the caller's global RNG is left as it was.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def numpy_seeded(rng: np.random.Generator) -> Iterator[None]:
    state, py_state = np.random.get_state(), random.getstate()
    seed = int(rng.integers(0, 2**32 - 1))
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)
        random.setstate(py_state)


@contextmanager
def torch_seeded(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    if device.type == "cpu":
        fork = torch.random.fork_rng(devices=[])
    else:  # also fork the accelerator's generator, which the device-side noise draws from
        fork = torch.random.fork_rng(devices=[device], device_type=device.type)
    with fork:
        torch.manual_seed(seed)
        yield
