"""The one AdamW over both adapters, and what it does to the frozen ``pix`` adapter in stage ``sem``.

``train.frozen_pix_in_optimizer``:

* ``false`` (the schema default): a frozen adapter's gradients stay ``None`` (``zero_grad(set_to_none=True)``)
  and AdamW skips it: no weight decay, no momentum, bit-identical through stage ``sem``.
* ``true`` (the official recipe, ``configs/train_official_sd21.yaml``): the official script zeroes gradients with
  ``zero_grad(set_to_none=False)``, so ``pix``, trained in stage ``pix``, keeps a zero-filled gradient in stage
  ``sem`` and AdamW goes on stepping it: its step count runs on, both moments decay, and the decaying first
  moment plus the weight decay keep moving it. Emulated here by a step pre-hook that gives a zero gradient to
  every parameter AdamW already holds state for and that has no gradient at that step. Keyed to the optimizer
  state (restored by a resume), not to gradient tensors left over from the previous step (gone after a
  restart), so a resumed run goes on exactly.

In both modes, as in the official code, ``sem`` never has a gradient in stage ``pix``: AdamW creates its state at
its first ``sem`` step, so its moments and step count start at the stage switch. A ``train.stage=sem`` run starts
from a checkpoint without optimizer state, so there ``pix`` stays exactly frozen in both modes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], train: DictConfig) -> torch.optim.AdamW:
    """AdamW with the ``train`` section's hyper-parameters, frozen adapters treated as configured."""
    optimizer = torch.optim.AdamW(
        list(params),
        lr=train.learning_rate,
        betas=(train.adam_beta1, train.adam_beta2),
        weight_decay=train.weight_decay,
        eps=train.adam_epsilon,
    )
    if train.frozen_pix_in_optimizer:
        keep_stepping_frozen(optimizer)
    return optimizer


def keep_stepping_frozen(optimizer: torch.optim.Optimizer):
    """From now on, each ``step`` also steps (with a zero gradient) every parameter that has optimizer state but
    no gradient: the official ``zero_grad(set_to_none=False)`` behaviour. Returns the hook's handle."""
    return optimizer.register_step_pre_hook(_zero_fill_stateful)


def _zero_fill_stateful(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is None and optimizer.state.get(param):
                param.grad = torch.zeros_like(param)
