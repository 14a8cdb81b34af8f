"""Preemption signals from the first line of a training run to the last, with real processes and real signals:
while loading (before the first step) the run exits 75 with nothing saved; after the last step it finishes
``final/`` and exits 0; both directly and through ``python -m pisasr.training.launch``."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from test_training import REPO, train_args

from pisasr.model.checkpoint import load_checkpoint
from pisasr.training.preemption import PREEMPTED_EXIT_CODE

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
WRAPPER = [sys.executable, "-m", "pisasr.training.launch", "--num_processes", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--num_machines", "1"]  # fmt: skip


def _handles(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` installed (Linux: the SigCgt mask of /proc/PID/status)."""
    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (sig - 1) & 1)


def _training_process(proc: subprocess.Popen) -> int | None:
    """The pid of the process running scripts/train.py: ``proc`` itself or one of its descendants."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        return next((p.pid for p in family if p.cmdline()[1:2] == ["scripts/train.py"]), None)
    except psutil.NoSuchProcess:
        return None


def _start(command, log):
    with open(log, "w") as err:
        return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=err)


def _finish(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(240)
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            child.kill()
        proc.kill()


@pytest.mark.parametrize(
    "wrapped, sig", [(False, signal.SIGTERM), (True, signal.SIGUSR1)], ids=["direct", "launch-wrapper"]
)
def test_a_signal_while_loading_exits_75_with_nothing_saved(tiny_base, tmp_path, wrapped, sig):
    out, log = tmp_path / "run", tmp_path / "run.log"
    args = train_args(
        tiny_base, out, "train.stage=pix", "train.pix_steps=2", "train.resume_from_checkpoint=auto"
    )
    proc = _start([*(WRAPPER if wrapped else [sys.executable]), *args], log)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:  # as soon as the training process handles it
        pid = _training_process(proc)
        if pid is not None and _handles(pid, sig):
            break
        time.sleep(0.005)
    assert "train:" not in log.read_text(), "training had already started"
    proc.send_signal(sig)  # the wrapper forwards it to the training, as sbatch --signal=B:USR1 sends it
    code = _finish(proc)
    err = log.read_text()
    assert code == PREEMPTED_EXIT_CODE, err[-3000:]
    assert f"stopped by {sig.name} before the first step: nothing saved" in err, err[-3000:]
    assert not (out / "checkpoints").exists() and not (out / "final").exists()


@pytest.mark.parametrize(
    "wrapped, sig", [(False, signal.SIGUSR1), (True, signal.SIGTERM)], ids=["direct", "launch-wrapper"]
)
def test_a_signal_after_the_last_step_lets_final_be_written_and_exits_0(tiny_base, tmp_path, wrapped, sig):
    out, log = tmp_path / "run", tmp_path / "run.log"
    args = train_args(tiny_base, out, "train.stage=pix", "train.pix_steps=2", "train.checkpointing_steps=100")
    proc = _start([*(WRAPPER if wrapped else [sys.executable]), *args], log)
    deadline = time.time() + 240
    while " 2/2 " not in log.read_text() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    target = psutil.Process(_training_process(proc) or proc.pid) if not wrapped else psutil.Process(proc.pid)
    while proc.poll() is None:  # one every 20 ms: they land in the last checkpoint, final/ and the exit
        try:
            target.send_signal(sig)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    code = _finish(proc)
    err = log.read_text()
    assert code == 0, err[-3000:]
    assert f"received {sig.name} after the last step: finishing final/, then exit 0" in err, err[-3000:]
    assert load_checkpoint(out / "final").states["pix"]  # complete and loadable


def test_launch_help_lists_the_wrapper_options_then_accelerates():
    done = subprocess.run(
        [sys.executable, "-m", "pisasr.training.launch", "--help"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    ours, _, theirs = done.stdout.partition("accelerate launch's options follow.")
    assert "--slurm" in ours and "--dry_run" in ours and f"exit code {PREEMPTED_EXIT_CODE}" in ours
    assert "--num_processes" in theirs and "--multi_gpu" in theirs


@pytest.mark.slow
def test_two_processes_print_the_adapters_folder_once(tiny_base, tmp_path):
    import socket

    from conftest import accelerate_launch
    from test_training import run_train

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = train_args(tiny_base, tmp_path / "run", "train.stage=pix", "train.pix_steps=1")
    done = run_train(args, launcher=accelerate_launch(2, port))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("adapters: ") == 1, done.stderr[-3000:]  # rank 0's line only
