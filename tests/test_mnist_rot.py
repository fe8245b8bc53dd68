"""repro.data.mnist_rot: the .amat reader, its cache, its checks, the download, and data=mnist_rot.

Data are tiny folders written by ``write_mnist_rot_folder``; the downloader is replaced by fakes
(no test touches the network).
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import repro.data.mnist_rot as mnist_rot
from repro.data import DataConfig, DataError, build_data, write_mnist_rot_folder
from repro.data.mnist_rot import TEST_FILE, TRAIN_FILE, load_mnist_rot

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def load(root: Path, verify: bool = False, download: bool = False):
    return load_mnist_rot(root, download=download, verify_checksums=verify)


def reference_table(path: Path) -> np.ndarray:
    """The file as the reference code reads it (``np.loadtxt``)."""
    return np.loadtxt(path)


def mnist_rot_cfg(root: Path, **overrides) -> dict:
    cfg = dict(name="mnist_rot", root=str(root), download=False, verify_checksums=False,
               preprocess="none", image_size=28)
    cfg.update(overrides)
    return cfg


def edit_line(path: Path, line: int, edit) -> None:
    """Replace the tokens of 1-based ``line`` of ``path`` by ``edit(tokens)``."""
    lines = path.read_text().splitlines()
    lines[line - 1] = " ".join(edit(lines[line - 1].split()))
    path.write_text("\n".join(lines) + "\n")


def set_token(column: int, value: str):
    def edit(tokens):
        tokens[column] = value
        return tokens
    return edit


def zip_of(folder: Path, prefix: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name in (TRAIN_FILE, TEST_FILE):
            zipped.write(folder / name, prefix + name)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- writer and reader
def test_written_folder_round_trip(tmp_path, tiny_mnist_rot):
    folder = tiny_mnist_rot(n_train=30, n_test=20)
    assert folder == tmp_path / "mnist_rotation_new"
    for name in (TRAIN_FILE, TEST_FILE):
        lines = (folder / name).read_text().splitlines()
        assert all(len(line.split()) == 785 for line in lines)
    train_x, train_y, test_x, test_y, classes = load(tmp_path)
    assert train_x.shape == (30, 1, 28, 28) and test_x.shape == (20, 1, 28, 28)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert classes == [str(c) for c in range(10)]
    assert train_y.tolist() == [i % 10 for i in range(30)] and test_y.tolist() == [i % 10 for i in range(20)]
    table = reference_table(folder / TRAIN_FILE)
    assert torch.equal(train_x.reshape(30, -1), torch.from_numpy(table[:, :784].astype(np.float32)))
    assert 0 <= float(train_x.min()) and float(train_x.max()) <= 1 and float((train_x == 0).float().mean()) > 0.3


def test_writer_is_seeded_and_checks_sizes(tmp_path):
    a = write_mnist_rot_folder(tmp_path / "a", n_train=12, n_test=10, seed=1)
    b = write_mnist_rot_folder(tmp_path / "b", n_train=12, n_test=10, seed=1)
    c = write_mnist_rot_folder(tmp_path / "c", n_train=12, n_test=10, seed=2)
    assert (a / TRAIN_FILE).read_bytes() == (b / TRAIN_FILE).read_bytes() != (c / TRAIN_FILE).read_bytes()
    with pytest.raises(ValueError, match="n_train=0 and n_test=5 must be >= 1"):
        write_mnist_rot_folder(tmp_path, n_train=0, n_test=5)


def test_root_may_be_the_folder_itself(tiny_mnist_rot):
    folder = tiny_mnist_rot(n_train=20, n_test=10)
    assert load(folder)[0].shape == (20, 1, 28, 28)


# ----------------------------------------------------------------------------- cache
def cache_files(root: Path) -> list[Path]:
    return sorted((root / ".cache").glob("mnist_rot-*.pt"))


def test_second_load_reads_the_cache_not_the_text(tmp_path, tiny_mnist_rot, monkeypatch):
    tiny_mnist_rot()
    first = load(tmp_path)
    assert len(cache_files(tmp_path)) == 1

    def no_parsing(path):
        raise AssertionError(f"parsed {path} again")
    monkeypatch.setattr(mnist_rot, "read_amat", no_parsing)
    second = load(tmp_path)
    for a, b in zip(first[:4], second[:4]):
        assert torch.equal(a, b)


def test_changed_file_invalidates_the_cache(tmp_path, tiny_mnist_rot):
    folder = tiny_mnist_rot(seed=0)
    old = load(tmp_path)[0]
    stat = (folder / TRAIN_FILE).stat()
    write_mnist_rot_folder(tmp_path, n_train=30, n_test=20, seed=1)
    os.utime(folder / TRAIN_FILE, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new mtime, whatever the clock
    new = load(tmp_path)[0]
    assert not torch.equal(old, new)
    assert torch.equal(new.reshape(30, -1),
                       torch.from_numpy(reference_table(folder / TRAIN_FILE)[:, :784].astype(np.float32)))
    assert len(cache_files(tmp_path)) == 1  # the stale copy is deleted


def test_corrupt_cache_is_parsed_again(tmp_path, tiny_mnist_rot):
    tiny_mnist_rot()
    expected = load(tmp_path)[0]
    cache_files(tmp_path)[0].write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="ignoring unreadable MNIST-rot cache"):
        assert torch.equal(load(tmp_path)[0], expected)


# ----------------------------------------------------------------------------- checks
@pytest.mark.parametrize("line, edit, expected", [
    (3, lambda t: t[:-2] + t[-1:], r"line 3 has 784 numbers; expected 785 \(784 pixels, then the label\)"),
    (2, lambda t: t + ["0"], "line 2 has 786 numbers; expected 785"),
    (2, set_token(4, "abc"), r"line 2: 'abc' \(column 5\) is not a number"),
    (4, set_token(9, "1.5"), r"line 4: pixel 10 is 1.5, outside \[0, 1\]"),
    (5, set_token(0, "-0.25"), r"line 5: pixel 1 is -0.25, outside \[0, 1\]"),
    (1, set_token(7, "nan"), r"line 1: pixel 8 is nan, outside \[0, 1\]"),
    (6, set_token(-1, "3.5"), r"line 6: label 3.5 is not an integer; expected the class 0..9"),
    (7, set_token(-1, "10.0"), r"line 7: label 10.0 is out of range; expected the class 0..9"),
    (8, set_token(-1, "-1"), r"line 8: label -1.0 is out of range"),
])
def test_malformed_line_is_a_one_line_error_naming_file_and_line(tmp_path, tiny_mnist_rot, line, edit, expected):
    path = tiny_mnist_rot() / TRAIN_FILE
    edit_line(path, line, edit)
    with pytest.raises(DataError, match=expected) as err:
        load(tmp_path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and "replace it with the official file" in message


def test_line_numbers_count_blank_lines(tmp_path, tiny_mnist_rot):
    path = tiny_mnist_rot() / TEST_FILE
    lines = path.read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:-1] + ["12"])
    path.write_text("\n".join(lines[:1] + [""] + lines[1:]) + "\n")  # a blank line 2: the bad row is line 4
    with pytest.raises(DataError, match=r"mnist_all_rotation_normalized_float_test.amat: line 4: label 12.0"):
        load(tmp_path)


def test_empty_file_is_a_clear_error(tmp_path, tiny_mnist_rot):
    path = tiny_mnist_rot() / TEST_FILE
    path.write_text("")
    with pytest.raises(DataError, match=r"test.amat is empty \(0 bytes\)"):
        load(tmp_path)
    path.write_text("\n\n")
    with pytest.raises(DataError, match="test.amat: it holds no lines of numbers"):
        load(tmp_path)


def test_row_counts_checked_unless_verify_is_off(tmp_path, tiny_mnist_rot, monkeypatch):
    folder = tiny_mnist_rot(n_train=30, n_test=20)
    assert len(load(tmp_path, verify=False)[1]) == 30  # also fills the cache: the check applies to it too
    with pytest.raises(DataError, match=f"^{folder / TRAIN_FILE} has 30 rows, the official file 12000: .*"
                                        "set data.verify_checksums=false$"):
        load(tmp_path, verify=True)
    monkeypatch.setitem(mnist_rot.OFFICIAL_ROWS, TRAIN_FILE, 30)
    with pytest.raises(DataError, match=f"{folder / TEST_FILE} has 20 rows, the official file 50000"):
        load(tmp_path, verify=True)
    monkeypatch.setitem(mnist_rot.OFFICIAL_ROWS, TEST_FILE, 20)
    assert len(load(tmp_path, verify=True)[3]) == 20


def test_missing_files_without_download_say_what_to_put_where(tmp_path, tiny_mnist_rot):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load(tmp_path / "empty")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"MNIST-rot not found: {tmp_path / 'empty' / 'mnist_rotation_new'} lacks "
                              f"{TRAIN_FILE}, {TEST_FILE} and data.download=false; put ")
    assert "set data.download=true" in message and mnist_rot.ARCHIVE_URL in message
    (tiny_mnist_rot() / TEST_FILE).unlink()
    with pytest.raises(DataError, match=f"lacks {TEST_FILE} and data.download=false"):
        load(tmp_path)


def test_config_names_the_files_when_root_is_missing(tmp_path):
    with pytest.raises(DataError, match=r"does not exist and data.download=false; create it and put "
                                        r"mnist_rotation_new/ \(mnist_all_rotation_normalized_float_train_valid"):
        DataConfig(name="mnist_rot", root=str(tmp_path / "nowhere"), download=False).validate()
    DataConfig(name="mnist_rot", root=str(tmp_path / "nowhere"), download=True).validate()


# ----------------------------------------------------------------------------- download
@pytest.fixture
def fake_download(tmp_path, monkeypatch):
    """``fake_download(body)``: the downloader writes ``body`` (bytes or an exception to raise) and
    counts its calls in the returned list."""
    def install(body):
        calls = []

        def download_file(url, path):
            calls.append(url)
            if isinstance(body, Exception):
                raise body
            Path(path).write_bytes(body)
        monkeypatch.setattr(mnist_rot, "download_file", download_file)
        return calls
    return install


@pytest.mark.parametrize("prefix", ["", "mnist_rotation_new/"], ids=["flat", "in-folder"])
def test_download_fetches_checks_and_extracts(tmp_path, tiny_mnist_rot, fake_download, monkeypatch, prefix):
    body = zip_of(tiny_mnist_rot(root=tmp_path / "source"), prefix)
    calls = fake_download(body)
    monkeypatch.setattr(mnist_rot, "ARCHIVE_MD5", hashlib.md5(body).hexdigest())
    root = tmp_path / "data"
    train_x = load(root, verify=False, download=True)[0]
    assert calls == [mnist_rot.ARCHIVE_URL] and (root / "mnist_rotation_new.zip").is_file()
    assert (root / "mnist_rotation_new" / TRAIN_FILE).read_bytes() == \
        (tmp_path / "source" / "mnist_rotation_new" / TRAIN_FILE).read_bytes()
    assert train_x.shape == (30, 1, 28, 28)
    load(root, verify=False, download=True)
    assert len(calls) == 1  # the files are there: no second download


def test_download_md5_mismatch_names_the_archive(tmp_path, tiny_mnist_rot, fake_download):
    body = zip_of(tiny_mnist_rot(root=tmp_path / "source"))
    fake_download(body)
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:
        load(root, verify=True, download=True)
    assert str(err.value) == (f"checksum mismatch for {root / 'mnist_rotation_new.zip'}: md5 "
                              f"{hashlib.md5(body).hexdigest()}, expected {mnist_rot.ARCHIVE_MD5}; delete it and "
                              f"rerun to download it again, or set data.verify_checksums=false")
    assert not (root / "mnist_rotation_new").exists()  # nothing extracted from an unverified archive
    assert load(root, verify=False, download=True)[0].shape == (30, 1, 28, 28)  # verify off: accepted


@pytest.mark.parametrize("body, expected", [
    (OSError("network is unreachable"), r"could not download http://.*mnist_rotation_new.zip to .*"
                                        r"\(OSError: network is unreachable\); download it by hand"),
    (b"<html>not a zip</html>", r"mnist_rotation_new.zip is not a readable zip archive .*delete it"),
])
def test_failed_download_is_a_one_line_error(tmp_path, fake_download, body, expected):
    fake_download(body)
    with pytest.raises(DataError, match=expected) as err:
        load(tmp_path, verify=False, download=True)
    assert "\n" not in str(err.value)


def test_archive_without_the_files_is_refused(tmp_path, fake_download):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("readme.txt", "hello")
    fake_download(buffer.getvalue())
    with pytest.raises(DataError, match=rf"holds no {TRAIN_FILE}, {TEST_FILE} \(it holds \['readme.txt'\]\)"):
        load(tmp_path, verify=False, download=True)


# ----------------------------------------------------------------------------- data=mnist_rot
def test_yaml_is_a_valid_config(tmp_path, monkeypatch):
    monkeypatch.setenv("GCNN_DATA_ROOT", str(tmp_path))
    cfg = DataConfig.from_mapping(OmegaConf.load(CONFIGS / "data" / "mnist_rot.yaml"))
    assert (cfg.name, cfg.root, cfg.preprocess, cfg.val_size, cfg.train_size, cfg.image_size,
            cfg.verify_checksums, cfg.download) == ("mnist_rot", str(tmp_path), "standardize", 0, None, 28,
                                                    True, True)


def test_image_size_other_than_28_is_refused():
    with pytest.raises(ValueError, match=r"^data.image_size=32 is not valid; expected 28 for data=mnist_rot"):
        DataConfig(name="mnist_rot", image_size=32).validate()
    # the field's default is digits_rot's size: for mnist_rot it reads as 28, so a config without the key
    # (a plain dict) records the same image_size, and so the same run identity, as the YAML
    assert DataConfig(name="mnist_rot").validate().image_size == 28
    assert DataConfig.from_mapping({"name": "mnist_rot"}) == DataConfig(name="mnist_rot", image_size=28)
    assert DataConfig(name="digits_rot").image_size == 16


def test_val_size_is_the_last_rows(tmp_path, tiny_mnist_rot):
    folder = tiny_mnist_rot(n_train=30)
    table = torch.from_numpy(reference_table(folder / TRAIN_FILE).astype(np.float32))
    bundle = build_data(mnist_rot_cfg(tmp_path, val_size=7))
    assert torch.equal(bundle.val_x.reshape(7, -1), table[-7:, :784])
    assert torch.equal(bundle.train_x.reshape(23, -1), table[:23, :784])
    assert bundle.val_y.tolist() == [i % 10 for i in range(23, 30)]


def test_train_size_is_a_balanced_subset_of_the_rows_before_the_validation_split(tmp_path, tiny_mnist_rot):
    folder = tiny_mnist_rot(n_train=60)
    table = torch.from_numpy(reference_table(folder / TRAIN_FILE).astype(np.float32))
    bundle = build_data(mnist_rot_cfg(tmp_path, val_size=20, train_size=20, seed=3))
    assert torch.bincount(bundle.train_y, minlength=10).tolist() == [2] * 10
    rows = [int(torch.nonzero((table[:, :784] == image.flatten()).all(1))[0]) for image in bundle.train_x]
    assert max(rows) < 40 and len(set(rows)) == 20
    with pytest.raises(DataError, match="data.train_size=41 is larger than the 40 training images left after "
                                        "data.val_size=20"):
        build_data(mnist_rot_cfg(tmp_path, val_size=20, train_size=41))


def test_build_data_standardizes_with_the_training_set_global_statistics(tmp_path, tiny_mnist_rot):
    folder = tiny_mnist_rot(n_train=30, n_test=20)
    bundle = build_data(mnist_rot_cfg(tmp_path, preprocess="standardize"))
    assert (bundle.name, bundle.num_classes, bundle.in_channels) == ("mnist_rot", 10, 1)
    assert bundle.train_x.shape == (30, 1, 28, 28) and bundle.test_x.shape == (20, 1, 28, 28)
    assert bundle.val_x is None
    # the reference code's preprocess_mnist_data, in float64
    train = reference_table(folder / TRAIN_FILE)[:, :784].astype(np.float32).astype(np.float64)
    test = reference_table(folder / TEST_FILE)[:, :784].astype(np.float32).astype(np.float64)
    mean = train.mean()
    std = (train - mean).std()
    np.testing.assert_allclose(bundle.train_x.reshape(30, -1).numpy(), (train - mean) / std, rtol=0, atol=1e-5)
    np.testing.assert_allclose(bundle.test_x.reshape(20, -1).numpy(), (test - mean) / std, rtol=0, atol=1e-5)
