"""Signals end ``scripts/infer.py`` cleanly, with real signals sent to a real process: what ``timeout``, ``docker
stop``, systemd and SLURM send (SIGTERM), a closed terminal (SIGHUP) and Ctrl-C (SIGINT) each leave only complete
files, a completed run record and the exit code ``128 + signal number``; the partial files of an earlier killed
(SIGKILL) run are removed by the next run into that folder."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import image_file
from conftest import infer_args as common
from conftest import run_infer as infer

from pisasr.inference.outputs import is_complete

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _many_inputs(folder: Path, count: int = 12) -> Path:
    folder.mkdir()
    for i in range(count):
        image_file(folder / f"img{i:02d}.png", (48, 40), seed=i)
    return folder


def _infer_process(tiny_base, src, out, *extra) -> subprocess.Popen:
    args = [str(a) for a in ("-i", src, *common(tiny_base, out, *extra))]
    return subprocess.Popen(
        [sys.executable, "scripts/infer.py", *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_first_output(proc: subprocess.Popen, out: Path, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while proc.poll() is None and time.time() < deadline:
        if any(p.suffix == ".png" for p in out.glob("img*.png")):
            return
        time.sleep(0.01)
    raise AssertionError(f"no output appeared; exit code {proc.poll()}: {proc.stderr.read()[-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_leaves_complete_files_and_a_completed_record(tiny_base, tmp_path, sig):
    src, out = _many_inputs(tmp_path / "lr"), tmp_path / "out"
    proc = _infer_process(tiny_base, src, out, "--upscale", "4")
    try:
        _wait_for_first_output(proc, out)
        proc.send_signal(sig)
        time.sleep(0.05)
        proc.send_signal(sig)  # a second one, while the first is handled: noted, nothing else
        code = proc.wait(120)
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert code == 128 + sig, err[-2000:]
    assert f"interrupted ({sig.name}, exit code {128 + sig})" in err
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], "a temporary file was left"
    run = json.loads((out / "run.json").read_text())["runs"][-1]
    assert run["status"] == "interrupted"
    on_disk = sorted(p.name for p in out.glob("img*.png"))
    assert on_disk and run["written"] == on_disk  # every image on disk is in the record, and only those
    assert len(on_disk) < 12, "the run finished before the signal"
    assert all(is_complete(out / name) for name in on_disk)


def _pid_of_a_killed_process() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.pid


def test_partial_files_of_a_killed_run_are_removed_by_the_next_run(tiny_base, lr_dir, tmp_path, capsys):
    """A run killed with SIGKILL while writing leaves its temporary file (nothing can remove it then); the next run
    into the folder removes it, and those of older versions for its outputs, but not a live process's."""
    from pisasr.io import files

    out = tmp_path / "out"
    out.mkdir()
    dead = _pid_of_a_killed_process()
    stale = out / f".a.png.{dead}-{files._HOST}-k2x9q0ab"
    legacy = out / ".b.png.abcd_123"  # the name written before the process id was part of it
    stale_record = out / f".run.json.{dead}-{files._HOST}-zz00aa11"
    live = out / f".a.png.{os.getpid()}-{files._HOST}-live0001"  # this test process is running
    elsewhere = out / f".a.png.{dead}-0badf00d-other001"  # another machine's, on a shared disk
    unrelated = out / ".notes.txt.abcd_123"  # legacy-shaped, but not one of this run's outputs
    for path in (stale, legacy, stale_record, live, elsewhere, unrelated):
        path.write_bytes(b"\x89PNG partial")
    assert infer("-i", lr_dir, "--skip_existing", *common(tiny_base, out)) == 0
    left = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert left == sorted([live.name, elsewhere.name, unrelated.name])
    assert "removed 3 partial files left by a killed run" in capsys.readouterr().err


def test_a_temporary_file_names_its_process(tmp_path):
    """What the clean-up relies on: the writer's process id and machine are in the temporary file's name."""
    from pisasr.io import files

    seen = []

    def write(tmp):
        seen.append(Path(tmp).name)
        Path(tmp).write_text("x")

    files.atomic_write(tmp_path / "probe.txt", write)
    assert seen[0].startswith(f".probe.txt.{os.getpid()}-{files._HOST}-")
    assert files.remove_stale_partials(tmp_path) == [] and os.listdir(tmp_path) == ["probe.txt"]
