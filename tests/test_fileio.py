"""Atomic writes: a failed write leaves the previous file and no temporary behind."""

import pytest

from pisasr.fileio import atomic_write, atomic_write_text


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
