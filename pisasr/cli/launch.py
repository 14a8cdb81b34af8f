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
from pisasr.training.preemption import FINISHED_ENV, MARKER_ENV, PREEMPTED_EXIT_CODE

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


# Preemption signals that ``accelerate launch``'s one-process launcher has no handler for: their default action would
# kill it, orphaning the training process and closing the pipe its stderr goes through. The launcher starts with
# them ignored (an ignored signal stays ignored across exec); the multi-process launcher installs its own handlers
# (``PET_SIGNALS_TO_HANDLE``) and the training process its own (``train.preempt_signals``).
UNHANDLED_BY_LAUNCHER = ("SIGUSR1", "SIGUSR2", "SIGHUP")


def _ignore_unhandled_signals() -> None:
    for name in UNHANDLED_BY_LAUNCHER:
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def run(command: list[str], env: Mapping[str, str], exiting: bool = False) -> int:
    """Run ``command`` in its own process group, forward preemption signals to it, wait for every process in
    it, and return its exit code, or ``PREEMPTED_EXIT_CODE`` when training stopped for a preemption. With
    ``exiting`` (this process exits next), the signals stay ignored afterwards rather than kill it."""
    with tempfile.TemporaryDirectory(prefix="pisasr-launch-") as tmp:
        marker, finished = Path(tmp) / "preempted", Path(tmp) / "finished"
        child_env = {**env, MARKER_ENV: str(marker), FINISHED_ENV: str(finished)}
        child_env["PET_SIGNALS_TO_HANDLE"] = ",".join(ELASTIC_SIGNALS)
        child_env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "600")
        _become_subreaper()
        started: list[subprocess.Popen] = []
        early: list[int] = []  # signals received before the launcher was started
        forwarded: list[int] = []

        def forward(signum, frame):
            if not started:
                early.append(signum)
                return
            if (
                signum in forwarded
            ):  # once each: the training notes repeats anyway, and a second SIGTERM makes
                return  # accelerate's one-process launcher kill it at once instead of after its grace period
            forwarded.append(signum)
            try:
                os.killpg(started[0].pid, signum)
            except ProcessLookupError:
                pass

        previous = {sig: signal.signal(sig, forward) for sig in (getattr(signal, n) for n in PREEMPT_SIGNALS)}
        try:
            if early:  # nothing started, nothing to save: requeue
                print(f"stopped by {signal.Signals(early[0]).name} before training started", file=sys.stderr)
                return PREEMPTED_EXIT_CODE
            child = subprocess.Popen(
                command, env=child_env, start_new_session=True, preexec_fn=_ignore_unhandled_signals
            )
            started.append(child)
            if early:  # arrived while the launcher was being started
                forward(early[0], None)
            code = child.wait()
            while True:  # reap orphans of the launcher (their exit ends the run on this machine)
                try:
                    os.wait()
                except ChildProcessError:
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_IGN if exiting else handler)
        if marker.exists():
            return PREEMPTED_EXIT_CODE
        if finished.exists() and forwarded:  # a signal after the last step: training is done, whatever the
            return 0  # launcher made of the signal (one that handles SIGTERM exits with 143)
        return 128 - code if code < 0 else code


USAGE = (
    "python -m pisasr.training.launch [--slurm] [--dry_run] [accelerate launch options] scripts/train.py ..."
)
WRAPPER_HELP = f"""usage: {USAGE}

accelerate launch, as a child that a scheduler can preempt cleanly. Options of this wrapper (before any other):
  --slurm     take --num_machines, --machine_rank, --num_processes, --main_process_ip and --main_process_port
              from the SLURM environment (one task per node; MASTER_ADDR: the first node; GPUs per node from
              PISASR_GPUS_PER_NODE or SLURM_GPUS_ON_NODE), see scripts/slurm/train.sbatch
  --dry_run   print the accelerate launch command instead of running it
  -h, --help  this help, then accelerate launch's own

What it adds to accelerate launch:
  exit code {PREEMPTED_EXIT_CODE} when training stopped for a preemption signal (accelerate launch turns every failing
    code into 1), so that a job script can requeue it; any other exit code passes through
  the preemption signals ({", ".join(PREEMPT_SIGNALS)}) go to every training process,
    also with one process (which accelerate launch does not forward them to)
  TORCH_ELASTIC_SHUTDOWN_TIMEOUT=600 unless set: time for the preemption checkpoint before processes are killed

accelerate launch's options follow.
"""


def main(argv: list[str] | None = None, exiting: bool = False) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    script = next((i for i, a in enumerate(args) if a.endswith(".py")), len(args))
    if {"-h", "--help"} & set(args[:script]):  # ours, then accelerate launch's (not the training script's)
        print(WRAPPER_HELP, flush=True)
        return subprocess.call([sys.executable, "-m", "accelerate.commands.launch", "--help"])
    slurm = dry_run = False
    while args and args[0] in ("--slurm", "--dry_run"):
        slurm, dry_run = slurm or args[0] == "--slurm", dry_run or args[0] == "--dry_run"
        args.pop(0)
    if not args:
        raise ConfigError(f"usage: {USAGE} (--help lists the options)")
    command = launcher_command(args, os.environ, slurm)
    if dry_run:
        print(shlex.join(command))
        return 0
    return run(command, os.environ, exiting)


def entry() -> None:
    from functools import partial

    from pisasr.cli import run_cli

    sys.exit(run_cli(partial(main, exiting=True)))


if __name__ == "__main__":
    entry()
