"""Stopping cleanly when a scheduler warns (SLURM sends SIGTERM before preempting, ``--signal`` a chosen one
before the time limit): every rank finishes its optimizer step, a checkpoint is written, and the run exits with
``PREEMPTED_EXIT_CODE`` so that a wrapper requeues it.

The signals are handled from the first line of the run to the last, in phases:

* ``loading`` (config, data, model, checkpoint: nothing written yet): the first signal raises
  ``PreemptedBeforeStart`` at once, and the run exits 75 with nothing saved and the resume point unchanged;
* ``setup`` (the run folder is being prepared) and ``training``: the handler only records the signal (later ones,
  e.g. while the checkpoint is written, are noted and ignored). Before the first step and after each optimizer
  step the ranks all-reduce the flag, so all of them stop at the same point even when the signal reached only
  some of them: before the first step with nothing to save, later with a checkpoint;
* ``final`` (after the last step, while ``final/`` is written): the signal is noted and the run finishes, exit 0.
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
# Set by ``pisasr.training.launch`` too: the file the local main process writes once ``final/`` is written, so that
# a run that a signal reached after its last step (which can end the launcher with that signal) still exits 0.
FINISHED_ENV = "PISASR_FINISHED_FILE"
# Handled before the config is read (its train.preempt_signals then takes over): that option's default.
BEFORE_CONFIG = ("SIGTERM", "SIGUSR1")


class Preempted(Exception):
    """Raised after the preemption checkpoint; the training CLI turns it into ``PREEMPTED_EXIT_CODE``."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        self.checkpoint = checkpoint
        super().__init__(
            f"stopped by {signal_name} after step {step}, checkpoint {checkpoint}: run the same command with "
            f"train.resume_from_checkpoint=auto to continue (exit code {PREEMPTED_EXIT_CODE})"
        )


def _note(text: str) -> None:
    try:
        os.write(2, text.encode())  # not print(): a handler may interrupt a write to the same stream
    except OSError:  # stderr gone (a launcher that died of the same signal): the note is not worth a crash
        pass


class PreemptedBeforeStart(BaseException):
    """A preemption signal before the first step: nothing to save, the resume point unchanged. A ``BaseException``
    (as ``KeyboardInterrupt``), so that no ``except Exception`` of a model loader takes it for a load failure."""

    def __init__(self, signal_name: str):
        super().__init__(
            f"stopped by {signal_name} before the first step: nothing saved, the resume point is unchanged; "
            f"run the same command to start (exit code {PREEMPTED_EXIT_CODE})"
        )


_NOTES = {
    "loading": "received {name} while loading: nothing to save yet, stopping\n",
    "setup": "received {name}: stopping before the first step, nothing to save\n",
    "training": "received {name}: finishing this optimizer step, then a checkpoint and exit\n",
    "final": "received {name} after the last step: finishing final/, then exit 0 (training is done)\n",
}


class PreemptionWatch:
    """Records the first of ``signal_names`` received once installed (main thread only); in the ``loading`` phase
    it raises ``PreemptedBeforeStart`` instead (see the module's docstring for the phases)."""

    def __init__(self, signal_names, phase: str = "training"):
        self.signals = [getattr(signal, name) for name in signal_names]
        self.received: str | None = None
        self.phase = phase
        self._previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        first = self.received is None
        if first:
            self.received = name
        if first or self.phase == "final":
            note = _NOTES[self.phase].format(name=name)
        else:
            note = f"received {name} again: ignored, still stopping cleanly\n"
        _note(note)
        if first and self.phase == "loading":
            raise PreemptedBeforeStart(name)

    def install(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous.setdefault(sig, signal.signal(sig, self._handle))
        return self

    def handle_instead(self, signal_names) -> PreemptionWatch:
        """Handle ``signal_names`` from now on (the config's, after the defaults handled while it was read)."""
        wanted = [getattr(signal, name) for name in signal_names]
        for sig in [s for s in self._previous if s not in wanted]:
            signal.signal(sig, self._previous.pop(sig))
        self.signals = wanted
        return self.install()

    def enter(self, phase: str) -> None:
        """Move to ``phase``; entering ``loading`` with a signal already received raises at once."""
        self.phase = phase
        if phase == "loading" and self.received is not None:
            raise PreemptedBeforeStart(self.received)

    def restore(self, ignore: bool = False) -> None:
        """The earlier handlers again; or, with ``ignore`` (the process exits next), the signals ignored, since
        Python gives its own handlers back the default action (death by the signal) while it shuts down."""
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if ignore else previous)
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


def mark_preempted(stopped: Preempted | PreemptedBeforeStart) -> None:
    """Tell ``pisasr.training.launch`` (one file per machine, by its local main process) that this run stopped to
    be requeued."""
    marker = os.environ.get(MARKER_ENV)
    if marker and os.environ.get("LOCAL_RANK", "0") == "0":
        Path(marker).write_text(f"{getattr(stopped, 'checkpoint', 'before the first step')}\n")


def mark_finished(final: Path) -> None:
    """Tell ``pisasr.training.launch`` that training finished (``final/`` written), whatever ends the launcher."""
    marker = os.environ.get(FINISHED_ENV)
    if marker and os.environ.get("LOCAL_RANK", "0") == "0":
        Path(marker).write_text(f"{final}\n")
