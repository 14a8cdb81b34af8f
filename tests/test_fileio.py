"""Atomic writes: a failed write leaves the previous file and no temporary behind."""

import os

import pytest

from pisasr.io.files import atomic_write, atomic_write_text, current_umask


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
