"""Atomic writes leave the old file intact when writing fails."""
import pytest

from repro import io


def test_write_json_round_trip(tmp_path):
    path = io.write_json(tmp_path / "sub" / "r.json", {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = io.write_text(tmp_path / "x.txt", "old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        io.atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]
