"""Stopping a command on SIGINT, SIGTERM or SIGHUP the way Ctrl-C stops it.

``timeout``, ``docker stop``, systemd and SLURM send SIGTERM; a closed terminal sends SIGHUP. Under
``stop_on_signals`` the first of them raises ``Stopped`` (a ``KeyboardInterrupt``) in the main thread, so the
command's ``finally`` blocks run: writes in progress are finished or their temporary files removed, and the run
record is completed as interrupted. Later signals, while that cleanup runs, are noted and ignored. The exit code is
the shell's for a death by that signal, ``128 + signal number``: 130 for SIGINT, 129 for SIGHUP, 143 for SIGTERM.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class Stopped(KeyboardInterrupt):
    """Raised by the first stop signal; ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.name)


def exit_code_of(interrupt: KeyboardInterrupt) -> tuple[int, str]:
    """(exit code, signal name) of an interruption: a plain ``KeyboardInterrupt`` is Ctrl-C's SIGINT."""
    if isinstance(interrupt, Stopped):
        return interrupt.exit_code, interrupt.name
    return 128 + signal.SIGINT, "SIGINT"


@contextmanager
def stop_on_signals(names: tuple[str, ...] = STOP_SIGNALS, restore: bool = True) -> Iterator[None]:
    """Within the block the first of ``names`` raises ``Stopped``; on leaving it the handlers are restored, or with
    ``restore`` false (a command's process about to exit) the signals are ignored: a late one must not kill the
    process with the signal's default action, which the shell would see instead of the documented exit code."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = []

    def handle(signum: int, frame) -> None:
        if not stopping:
            stopping.append(signum)
            raise Stopped(signum)
        note = f"received {signal.Signals(signum).name}: already stopping, ignored\n"
        try:
            os.write(2, note.encode())  # not print(): the handler may interrupt a write to the same stream
        except OSError:  # stderr closed: the note is not worth a crash
            pass

    previous = {}
    for name in names:
        sig = getattr(signal, name, None)  # SIGHUP does not exist on Windows
        if sig is not None:
            previous[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        stopping.append(None)
        for sig, handler in previous.items():
            # the earlier handler again; or ignored: Python resets its own handlers to the default action (death)
            # while the interpreter shuts down, not an ignored signal
            signal.signal(sig, handler if restore else signal.SIG_IGN)
