"""Atomic file writes: a reader (or a killed run) sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pisasr.errors import PiSAError


def _umask_by_setting_it() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Where /proc is missing (macOS), the umask can only be read by setting it, which is not safe while other threads
# create files: read once, at import, in the importing thread.
_UMASK_AT_IMPORT = _umask_by_setting_it()


def current_umask() -> int:
    """The process umask, read live from /proc where it exists (without changing it)."""
    try:
        match = re.search(r"^Umask:\s*([0-7]+)", Path("/proc/self/status").read_text(), re.MULTILINE)
        if match:
            return int(match.group(1), 8)
    except OSError:
        pass
    return _UMASK_AT_IMPORT


# The temporary file of ``atomic_write`` is ``.<name>.<pid>-<host>-<random>[suffix]`` beside its target, so that a
# later run can tell the partial file of a killed process (SIGKILL, power loss) from one still being written.
_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[a-z0-9_]{8}(\.[A-Za-z0-9]+)?$")
_LEGACY_PARTIAL = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}$")  # written before the pid was in the name


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike, names: set[str] = frozenset()) -> list[Path]:
    """Delete the temporary files that killed runs left in ``folder``: those of processes of this machine that no
    longer run (another machine's, on a shared disk, are left alone), and, for the file ``names`` given, those
    written before the process id was part of the name. Returns the files removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        match = _PARTIAL.match(entry.name)
        if match:
            stale = match["host"] == _HOST and not _alive(int(match["pid"]))
        else:
            legacy = _LEGACY_PARTIAL.match(entry.name)
            stale = legacy is not None and legacy["name"] in names
        if stale:
            try:
                os.remove(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:  # removed by another run meanwhile
                pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str = "") -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it over ``path``.

    The file gets the mode any other tool would give it: the replaced file's, or ``0o666`` less the umask for a new
    one (the temporary file is created private, 0600, and must not keep that mode). ``suffix`` keeps the temporary
    name's extension for writers that pick the format from it (OpenCV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-{_HOST}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


@contextmanager
def staged_folder(out: str | os.PathLike, exists: str = "replace", complete: str = "") -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block ends without error it becomes ``out``.

    A reader sees no folder or the complete one, and its files get the modes any other tool's would. An ``out``
    that is there when the block ends (an earlier run's, or another process's made meanwhile) is:
    ``"replace"``-d; with ``"keep"``, kept and ours dropped when it holds the file ``complete``, so concurrent
    writers of one deterministic folder (test workers making one tiny model) never delete what another is
    reading, else replaced; with ``"refuse"``, left alone: FileExistsError.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        mask = current_umask()
        for path in tmp.rglob("*"):  # mkdtemp and some writers (safetensors, onnx) make them private, 0600
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
        try:
            os.rename(tmp, out)  # fails when out is a folder with files
        except OSError:
            if exists == "refuse":
                raise FileExistsError(f"{out} appeared while it was being written") from None
            if exists == "keep" and complete and (out / complete).is_file():
                return
            shutil.rmtree(out, ignore_errors=True)
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PiSAError(
            f"output folder {folder} is not writable ({exc.strerror or exc}); choose another with -o"
        ) from None
