"""Stopping cleanly when a scheduler warns (SLURM sends SIGTERM before preempting, ``--signal`` a chosen one
before the time limit): every rank finishes its optimizer step, a checkpoint is written, and the run exits with
``PREEMPTED_EXIT_CODE`` so that a wrapper requeues it.

The handler only records the signal (later ones, e.g. while the checkpoint is written, are noted and ignored).
After each optimizer step the ranks all-reduce the flag, so all of them stop at the same step even when the
signal reached only some of them.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

# EX_TEMPFAIL from sysexits.h: "try again later". ``python -m pisasr.training.launch`` passes it through
# ``accelerate launch``, which turns every failing exit code into 1.
PREEMPTED_EXIT_CODE = 75
# Set by ``pisasr.training.launch``: the file each machine's local main process writes after a preemption
# checkpoint, which tells the wrapper to exit with PREEMPTED_EXIT_CODE.
MARKER_ENV = "PISASR_PREEMPTED_FILE"


class Preempted(Exception):
    """Raised after the preemption checkpoint; the training CLI turns it into ``PREEMPTED_EXIT_CODE``."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        self.checkpoint = checkpoint
        super().__init__(
            f"stopped by {signal_name} after step {step}, checkpoint {checkpoint}: run the same command with "
            f"train.resume_from_checkpoint=auto to continue (exit code {PREEMPTED_EXIT_CODE})"
        )


class PreemptionWatch:
    """Records the first of ``signal_names`` received once installed (main thread only)."""

    def __init__(self, signal_names: list[str]):
        self.signals = [getattr(signal, name) for name in signal_names]
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            note = f"received {name}: finishing this optimizer step, then a checkpoint and exit\n"
        else:
            note = f"received {name} again: ignored, still stopping cleanly\n"
        os.write(2, note.encode())  # not print(): a handler may interrupt a write to the same stream

    def install(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def stop_agreed(self, accelerator) -> bool:
        """Whether any rank received a signal; the same answer on every rank (one tiny all-reduce)."""
        if accelerator.num_processes == 1:
            return self.received is not None
        import torch  # not at module level: the launch wrapper imports this module and needs no torch

        flag = torch.tensor(float(self.received is not None), device=accelerator.device)
        stop = accelerator.reduce(flag, reduction="sum").item() > 0
        if stop and self.received is None:
            self.received = "a signal on another process"
        return stop


def mark_preempted(accelerator, stopped: Preempted) -> None:
    """Tell ``pisasr.training.launch`` (one file per machine) that this run stopped to be requeued."""
    marker = os.environ.get(MARKER_ENV)
    if marker and accelerator.is_local_main_process:
        Path(marker).write_text(f"{stopped.checkpoint}\n")
