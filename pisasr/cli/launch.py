"""``python -m pisasr.training.launch [--slurm] [--dry_run] [accelerate launch options] scripts/train.py ...``

``accelerate launch`` as a child that a scheduler can preempt cleanly:

* Exit code: ``accelerate launch`` turns every failing exit code of its processes into 1, so a preempted run
  (exit 75 from ``scripts/train.py``) could not be told from a crash. Each machine's local main process writes
  a marker file after the preemption checkpoint; this wrapper then exits with ``PREEMPTED_EXIT_CODE``.
* Signals: the preemption signals it receives go to the launcher's whole process group (the one-process
  launcher does not forward them; the multi-process one does, to the signals in ``PET_SIGNALS_TO_HANDLE``, set
  here to include SIGUSR1/SIGUSR2, which would otherwise kill it). ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` (how long
  the launcher waits for its processes after a signal before it kills them; PyTorch's default is 30 s) is set
  to 600 s unless given, so that the preemption checkpoint can be written.
* ``--slurm``: ``--num_machines/--machine_rank/--main_process_ip/--main_process_port/--num_processes`` from the
  SLURM environment (one task per node; ``MASTER_ADDR`` is the first node, see ``scripts/slurm/train.sbatch``).
  ``--dry_run`` prints the command instead of running it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pisasr.config import PREEMPT_SIGNALS
from pisasr.errors import ConfigError
from pisasr.training.preemption import MARKER_ENV, PREEMPTED_EXIT_CODE

ELASTIC_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def _int_env(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "")
    if not value.strip().isdigit():
        raise ConfigError(
            f"--slurm: environment variable {name}={value!r} is not a number (run under sbatch)"
        )
    return int(value)


def slurm_options(env: Mapping[str, str]) -> list[str]:
    """``accelerate launch`` options for this node of a SLURM job with one task per node."""
    nodes, node = _int_env(env, "SLURM_NNODES"), _int_env(env, "SLURM_NODEID")
    gpus = env.get("PISASR_GPUS_PER_NODE") or env.get("SLURM_GPUS_ON_NODE") or "1"
    per_node = _int_env({"GPUs per node": gpus}, "GPUs per node")
    head = env.get("MASTER_ADDR")
    if not head:
        raise ConfigError("--slurm: MASTER_ADDR is not set (the sbatch script sets it to the first node)")
    port = env.get("MASTER_PORT") or str(20000 + _int_env(env, "SLURM_JOB_ID") % 20000)
    options = ["--multi_gpu"] if nodes * per_node > 1 else []
    return options + [
        "--num_machines", str(nodes), "--machine_rank", str(node), "--num_processes", str(nodes * per_node),
        "--main_process_ip", head, "--main_process_port", port,
        "--rdzv_backend", "static", "--max_restarts", "0", "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip


def launcher_command(args: list[str], env: Mapping[str, str], slurm: bool) -> list[str]:
    options = slurm_options(env) if slurm else []
    return [sys.executable, "-m", "accelerate.commands.launch", *options, *args]


def _become_subreaper() -> None:
    """Orphaned processes of the launcher (its one-process mode leaves its child running when it is killed)
    become our children, so that we can wait for them (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def run(command: list[str], env: Mapping[str, str]) -> int:
    """Run ``command`` in its own process group, forward preemption signals to it, wait for every process in
    it, and return its exit code, or ``PREEMPTED_EXIT_CODE`` when training stopped for a preemption."""
    with tempfile.TemporaryDirectory(prefix="pisasr-launch-") as tmp:
        marker = Path(tmp) / "preempted"
        child_env = {**env, MARKER_ENV: str(marker), "PET_SIGNALS_TO_HANDLE": ",".join(ELASTIC_SIGNALS)}
        child_env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "600")
        _become_subreaper()
        child = subprocess.Popen(command, env=child_env, start_new_session=True)

        def forward(signum, frame):
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass

        previous = {sig: signal.signal(sig, forward) for sig in (getattr(signal, n) for n in PREEMPT_SIGNALS)}
        try:
            code = child.wait()
            while True:  # reap orphans of the launcher (their exit ends the run on this machine)
                try:
                    os.wait()
                except ChildProcessError:
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if marker.exists():
            return PREEMPTED_EXIT_CODE
        return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    slurm = dry_run = False
    while args and args[0] in ("--slurm", "--dry_run"):
        slurm, dry_run = slurm or args[0] == "--slurm", dry_run or args[0] == "--dry_run"
        args.pop(0)
    if not args:
        raise ConfigError("usage: python -m pisasr.training.launch [--slurm] [--dry_run] [accelerate launch options] "
                          "scripts/train.py --config FILE [key=value ...]")  # fmt: skip
    command = launcher_command(args, os.environ, slurm)
    if dry_run:
        print(shlex.join(command))
        return 0
    return run(command, os.environ)


def entry() -> None:
    from pisasr.cli import run_cli

    sys.exit(run_cli(main))


if __name__ == "__main__":
    entry()
