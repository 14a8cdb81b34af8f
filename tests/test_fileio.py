"""Atomic writes: a failed write leaves the previous file and no temporary behind."""

import contextlib
import os

import pytest

from pisasr.io.files import atomic_write, atomic_write_text, current_umask, staged_folder


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "result.json", "old")

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path, umask):
    old = os.umask(umask)
    try:
        fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
        assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
        kept = atomic_write_text(tmp_path / "kept.txt", "x")
        os.chmod(kept, 0o640)
        atomic_write_text(kept, "y")
        assert kept.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert current_umask() == old


def _write_folder(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights").write_text(text)
    (folder / "done").write_text("")


def test_staged_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), staged_folder(out) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(out) as tmp:
        _write_folder(tmp, "ours")
        assert not out.exists()
    assert (out / "weights").read_text() == "ours"
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~current_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize(
    "exists, theirs_complete, kept",
    [
        ("replace", True, "ours"),
        ("keep", True, "theirs"),  # another test worker finished the same tiny model first
        ("keep", False, "ours"),  # a folder killed half-way is no model: replaced
        ("refuse", True, "theirs"),
    ],
)
def test_staged_folder_meets_a_folder_made_meanwhile_as_told(tmp_path, exists, theirs_complete, kept):
    out = tmp_path / "model"
    with (
        pytest.raises(FileExistsError) if exists == "refuse" else contextlib.nullcontext(),
        staged_folder(out, exists, complete="done") as tmp,
    ):
        _write_folder(tmp, "ours")
        _write_folder(out, "theirs")
        if not theirs_complete:
            (out / "done").unlink()
    assert (out / "weights").read_text() == kept
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
