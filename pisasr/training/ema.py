"""Exponential moving average of the trained adapters (``train.ema_decay``), as AddSR keeps one of its student.

AddSR (NJU-PCALab/AddSR ``ADD/utils/util_net.py:151-182``, used at ``train_addsr.py:995-996,1513-1514``) updates
``shadow = (1 - decay) * param + decay * shadow`` after every optimizer step for the parameters that require
gradients, and swaps the shadow in for its checkpoints (``:1522-1528``). Here the same update runs after every
optimizer step of the generator for the adapter parameters trainable at that step (``pix`` in stage pix, ``sem``
in stage sem), so a frozen adapter's shadow stays where its training left it. The shadow starts equal to the
adapters. Checkpoints' adapter files and ``final/`` hold the shadow (``applied``); the training state holds both
the shadow and the live weights, so that a resumed run goes on from the live weights (``restore_live``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pisasr.model.dual_lora import DualLoRA


class AdapterEMA:
    def __init__(self, dual: DualLoRA, decay: float):
        self.decay = float(decay)
        self.params = {n: p for n, p in dual.unet.named_parameters() if "lora_" in n}
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}
        self._live: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        for name, param in self.params.items():
            if param.requires_grad:
                self.shadow[name].mul_(self.decay).add_(param.detach(), alpha=1 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside, the adapters hold the shadow weights; the live weights come back after, bit for bit."""
        live = {n: p.detach().clone() for n, p in self.params.items()}
        try:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(self.shadow[name])
            yield
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(live[name])

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "shadow": {n: t.clone() for n, t in self.shadow.items()},
            "live": {n: p.detach().clone() for n, p in self.params.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Shadow now; the live weights when ``restore_live`` is called (after the adapter file, which holds the
        shadow, has been loaded)."""
        if set(state["shadow"]) != set(self.params):
            raise ValueError("EMA state does not match the adapters (another rank or base?)")
        for name, tensor in state["shadow"].items():
            self.shadow[name].copy_(tensor)
        self._live = state["live"]

    @torch.no_grad()
    def restore_live(self) -> None:
        if self._live is not None:
            for name, param in self.params.items():
                param.copy_(self._live[name])
            self._live = None
