"""Atomic writes leave the old file intact when writing fails; new files follow the umask."""
import os
import stat

import pytest
import torch

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


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=["022", "077", "002"])
def umask(request):
    """Run the test under this process umask, restored afterwards."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


@pytest.mark.parametrize("write", [
    lambda path: io.write_text(path, "x"),
    lambda path: io.write_json(path, {"a": 1}),
    lambda path: io.save_torch(path, {"t": torch.zeros(2)}),
], ids=["text", "json", "torch"])
def test_new_files_follow_the_umask(tmp_path, umask, write):
    """Like ``open(path, "w")``: mode 0666 minus the umask (0644 with umask 022), not 0600."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write(tmp_path / "out")
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_rewriting_a_private_file_follows_the_umask(tmp_path, umask):
    """A file left 0600 by an earlier version becomes readable when it is next written."""
    path = tmp_path / "result.json"
    path.write_text("{}")
    path.chmod(0o600)
    io.write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
