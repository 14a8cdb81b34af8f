"""Clusters: preemption signals (checkpoint, exit 75, exact restart) with real processes, multi-node launch over
loopback, the launch wrapper's exit codes, and the SLURM script under a faked SLURM environment."""

import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import accelerate_launch
from test_resume import assert_identical, checkpoint_contents
from test_training import REPO, run_train, train_args

from pisasr.model.checkpoint import load_checkpoint
from pisasr.training.preemption import MARKER_ENV, PREEMPTED_EXIT_CODE, PreemptionWatch

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, proc, seconds=240):
    deadline = time.time() + seconds
    while not predicate() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)


# -- the signal handler ------------------------------------------------------------------------------------------
class OneProcess:
    num_processes = 1


def test_watch_records_the_first_signal_and_ignores_repeats(capfd):
    watch = PreemptionWatch(["SIGUSR1", "SIGTERM"]).install()
    try:
        assert not watch.stop_agreed(OneProcess())
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the checkpoint is written: noted, nothing else
        assert watch.stop_agreed(OneProcess()) and watch.received == "SIGUSR1"
    finally:
        watch.restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    err = capfd.readouterr().err
    assert (
        "received SIGUSR1: finishing this optimizer step" in err and "received SIGTERM again: ignored" in err
    )


# -- the launch wrapper ---------------------------------------------------------------------------------------------
def _wrapped(child_code: str) -> subprocess.Popen:
    """``pisasr.cli.launch.run`` around a stand-in for ``accelerate launch``."""
    runner = (
        "import sys; from pisasr.cli.launch import run; "
        f"sys.exit(run([sys.executable, '-c', {child_code!r}], __import__('os').environ))"
    )
    return subprocess.Popen([sys.executable, "-c", runner], env=ENV, stderr=subprocess.PIPE, text=True)


def test_launch_wrapper_forwards_signals_and_passes_the_preemption_code_through():
    # as accelerate launch does, the stand-in turns the training's exit 75 into 1; the marker says why
    child = (
        "import os, signal, sys, time\n"
        "def stop(signum, frame):\n"
        f"    open(os.environ[{MARKER_ENV!r}], 'w').write('ckpt')\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGUSR1, stop)\n"
        "print('ready', file=sys.stderr, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = _wrapped(child)
    assert proc.stderr.readline().strip() == "ready"
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(60) == PREEMPTED_EXIT_CODE
    failing = _wrapped("import sys; sys.exit(3)")  # a crash keeps its code
    assert failing.wait(60) == 3


# -- preemption with real processes -------------------------------------------------------------------------------
def _rank_process(wrapper: subprocess.Popen, rank: int):
    import psutil

    for process in psutil.Process(wrapper.pid).children(recursive=True):
        if "scripts/train.py" in " ".join(process.cmdline()) and process.environ().get("RANK") == str(rank):
            return process
    raise AssertionError(f"no training process of rank {rank}")


def _kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        processes = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()


def _signal_repeatedly(process, times=20) -> None:
    """SIGTERM, then more every 50 ms for a second: the later ones land during the step or the save."""
    import psutil

    for _ in range(times):
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)


def _preempt(command, log, progress, send) -> int:
    """Run ``command`` until the progress bar shows ``progress``, call ``send(process)``; the checkpoint step."""
    with open(log, "w") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for(lambda: progress in log.read_text(), proc)
            send(proc)
            code = proc.wait(240)
        finally:
            _kill_tree(proc)  # ranks left hanging by a failure
    stderr = log.read_text()
    assert code == PREEMPTED_EXIT_CODE, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1, stderr[-3000:]  # one line per run, not per process
    return int(lines[0].split("after step ")[1].split(",")[0])


@pytest.mark.slow
def test_two_processes_preempted_by_signals_restart_to_the_uninterrupted_result(tiny_base, tmp_path):
    """SIGTERM to one rank only (both stop at the same step), then SIGUSR1 to the launch wrapper (through
    accelerate launch to every rank); each time exit 75, a checkpoint, and the same command resumes."""
    extra = ("train.stage=pix", "train.pix_steps=9", "train.checkpointing_steps=100")
    straight = tmp_path / "straight"
    done = run_train(train_args(tiny_base, straight, *extra), launcher=accelerate_launch(2, free_port()))
    assert done.returncode == 0, done.stderr[-3000:]

    out, log = tmp_path / "preempted", tmp_path / "run.log"
    options = accelerate_launch(2, free_port())[3:]  # without "python -m accelerate.commands.launch"
    command = [sys.executable, "-m", "pisasr.training.launch", *options,
               *train_args(tiny_base, out, *extra, "train.resume_from_checkpoint=auto")]  # fmt: skip
    first = _preempt(command, log, " 2/9 ", lambda proc: _signal_repeatedly(_rank_process(proc, 1)))
    assert 2 <= first < 9 and not (out / "final").exists()
    assert "received SIGTERM again: ignored" in log.read_text()
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"checkpoint-{first}"]
    second = _preempt(command, log, f" {first + 2}/9 ", lambda proc: proc.send_signal(signal.SIGUSR1))
    assert f"resumed from {out / 'checkpoints' / f'checkpoint-{first}'}" in log.read_text()
    assert first + 2 <= second < 9 and (out / "checkpoints" / f"checkpoint-{second}").is_dir()

    with open(log, "w") as err:  # the same command, as a requeued job runs it
        assert subprocess.run(command, cwd=REPO, env=ENV, stderr=err, timeout=300).returncode == 0
    assert f"resumed from {out / 'checkpoints' / f'checkpoint-{second}'}" in log.read_text()
    name = "checkpoints/checkpoint-9"
    assert_identical(checkpoint_contents(straight / name), checkpoint_contents(out / name), name)


# -- multi-node -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_machines_over_loopback_equal_one_machine_with_two_processes(tiny_base, tmp_path):
    extra = ("train.stage=pix", "train.pix_steps=3", "train.checkpointing_steps=100")
    one = tmp_path / "one_machine"
    done = run_train(train_args(tiny_base, one, *extra), launcher=accelerate_launch(2, free_port()))
    assert done.returncode == 0, done.stderr[-3000:]
    two, port = tmp_path / "two_machines", free_port()
    machines = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--multi_gpu",
                "--num_machines",
                "2",
                "--machine_rank",
                str(rank),
                "--num_processes",
                "2",
                "--main_process_ip",
                "127.0.0.1",
                "--main_process_port",
                str(port),
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                *train_args(tiny_base, two, *extra),
            ],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    for machine in machines:
        _, err = machine.communicate(timeout=300)
        assert machine.returncode == 0, err[-3000:]
    assert_identical(load_checkpoint(one / "final").states, load_checkpoint(two / "final").states)
    name = "checkpoints/checkpoint-3"
    assert_identical(checkpoint_contents(one / name), checkpoint_contents(two / name), name)


# -- the SLURM script ---------------------------------------------------------------------------------------------
FAKE_SRUN = """#!/bin/bash
# stand-in for srun: runs the task once per node, with that node's SLURM_NODEID
while [[ $1 == --* ]]; do shift; done
for node in $(seq 0 $((SLURM_NNODES - 1))); do SLURM_NODEID=$node "$@" || exit $?; done
exit ${FAKE_SRUN_EXIT:-0}
"""
FAKE_SCONTROL = """#!/bin/bash
# stand-in for scontrol: the job's hosts; requeue requests are logged
case $1 in
  show) printf 'gpu-a17\\ngpu-b02\\n' ;;
  requeue) echo "requeue $2" >> "$FAKE_LOG" ;;
esac
"""


def _sbatch(tmp_path, srun_exit=0):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu-[a17,b02]",
           "SLURM_GPUS_ON_NODE": "8", "PISASR_LAUNCH_FLAGS": "--dry_run", "FAKE_SRUN_EXIT": str(srun_exit),
           "FAKE_LOG": str(tmp_path / "scontrol.log")}  # fmt: skip
    for key in ("MASTER_ADDR", "MASTER_PORT", "PISASR_GPUS_PER_NODE"):
        env.pop(key, None)
    return subprocess.run(
        ["bash", "scripts/slurm/train.sbatch", "configs/train_official_sd21.yaml", "data.gt_lists=[l.txt]"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_sbatch_script_launches_every_node_and_requeues_on_preemption(tmp_path):
    done = _sbatch(tmp_path)
    assert done.returncode == 0, done.stderr
    commands = [
        shlex.split(line) for line in done.stdout.splitlines() if "accelerate.commands.launch" in line
    ]
    assert len(commands) == 2
    for rank, command in enumerate(commands):
        options = " ".join(
            command[command.index("accelerate.commands.launch") + 1 : command.index("scripts/train.py")]
        )
        assert f"--num_machines 2 --machine_rank {rank} --num_processes 16" in options
        assert "--main_process_ip gpu-a17 --main_process_port 24242" in options and "--multi_gpu" in options
        assert command[command.index("scripts/train.py") :] == [
            "scripts/train.py", "--config", "configs/train_official_sd21.yaml",
            "train.resume_from_checkpoint=auto", "data.gt_lists=[l.txt]",
        ]  # fmt: skip
    assert not (tmp_path / "scontrol.log").exists()

    preempted = _sbatch(tmp_path, srun_exit=PREEMPTED_EXIT_CODE)
    assert preempted.returncode == PREEMPTED_EXIT_CODE
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    crashed = _sbatch(tmp_path, srun_exit=1)
    assert crashed.returncode == 1 and (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"


def test_preempt_signals_are_checked_in_the_config():
    from pisasr.config import load_config
    from pisasr.errors import ConfigError

    assert list(load_config("configs/smoke.yaml").train.preempt_signals) == ["SIGTERM", "SIGUSR1"]
    with pytest.raises(ConfigError, match="train.preempt_signals: 'SIGKILL' is not one of SIGTERM"):
        load_config("configs/smoke.yaml", ["train.preempt_signals=[SIGKILL]"])
