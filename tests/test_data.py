"""repro.data: config, CIFAR-format reading/writing, subsets, preprocessing, digits_rot.

No test touches the network: CIFAR data are tiny folders written by
``write_cifar_folder`` and torchvision's downloader is replaced by fakes.
"""
from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import repro.data.cifar_format as cifar_module
import repro.data.preprocess as preprocess_module
from repro.data import DataConfig, DataError, build_augment, build_data, write_cifar_folder
from repro.data.cifar_format import cifar_layout, load_cifar
from repro.data.digits import digits_split, load_digits_rot, place_in_canvas, rotate_images
from repro.data.preprocess import (ZCA_EPS, Preprocessor, contrast_normalize, fit_preprocessor,
                                   fit_standardize, fit_zca)
from repro.data.subsets import balanced_subset, class_quotas, split_off_balanced

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ----------------------------------------------------------------------------- helpers
def read_written(folder: Path, kind: str) -> dict:
    """What write_cifar_folder put on disk, read back with plain pickle (torchvision's way)."""
    layout = cifar_layout(kind)

    def load(name):
        with open(folder / name, "rb") as f:
            return pickle.load(f, encoding="latin1")

    def stack(files):
        batches = [load(name) for name, _ in files]
        x = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([b[layout.label_key] for b in batches])
        return torch.from_numpy(x), torch.from_numpy(y).long()

    train_x, train_y = stack(layout.train_files)
    test_x, test_y = stack(layout.test_files)
    classes = load(layout.meta_file[0])[layout.names_key]
    return dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=classes)


def folder_cfg(root: Path, kind: str = "cifar10", **overrides) -> dict:
    cfg = dict(name="cifar_folder", format=kind, root=str(root), download=False,
               verify_checksums=False, preprocess="none")
    cfg.update(overrides)
    return cfg


def per_class(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels, minlength=num_classes).tolist()


# ----------------------------------------------------------------------------- DataConfig
def test_default_config_is_valid():
    assert DataConfig().validate() == DataConfig()


@pytest.mark.parametrize("override, needle", [
    ({"name": "mnist"}, "data.name='mnist'"),
    ({"preprocess": "pca"}, "data.preprocess='pca'"),
    ({"format": "svhn"}, "data.format='svhn'"),
    ({"train_size": -5}, "data.train_size=-5"),
    ({"train_size": 0}, "data.train_size=0"),
    ({"val_size": -1}, "data.val_size=-1"),
    ({"image_size": 2}, "data.image_size=2"),
    ({"seed": -1}, "data.seed=-1"),
    ({"download": "yes"}, "data.download='yes'"),
    ({"download": 1}, "data.download=1"),
    ({"root": ""}, "data.root=''"),
])
def test_config_rejects_bad_values(override, needle):
    """gcnn.validation's one-line format: ``<key>=<value> is not valid; expected ...``."""
    with pytest.raises(ValueError) as err:
        DataConfig.from_mapping(override)
    assert str(err.value).startswith(f"{needle} is not valid; expected ")
    assert "\n" not in str(err.value)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"^unknown data config key\(s\) \['colour'\]; valid keys"):
        DataConfig.from_mapping({"colour": "red"})


def test_config_names_the_choices():
    choices = r"\['cifar10', 'cifar100', 'cifar_folder', 'mnist_rot', 'digits_rot'\]"
    with pytest.raises(ValueError,
                       match=rf"^data.name='mnist' is not valid; expected one of {choices}$"):
        DataConfig(name="mnist").validate()
    with pytest.raises(ValueError, match=r"^data.preprocess='whiten' is not valid; expected one of "
                                         r"\['zca', 'standardize', 'none'\]$"):
        DataConfig(preprocess="whiten").validate()


def test_config_missing_root_without_download(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="does not exist and data.download=false; create it and "
                                         r"put cifar-10-batches-py/ \(data_batch_1..5"):
        DataConfig(name="cifar10", root=str(missing), download=False).validate()
    with pytest.raises(ValueError, match=r"holds cifar-100-python/ \(train, test, meta\)"):
        DataConfig(name="cifar_folder", format="cifar100", root=str(missing),
                   download=False).validate()
    DataConfig(name="cifar10", root=str(missing), download=True).validate()  # may be fetched
    DataConfig(name="digits_rot", root=str(missing), download=False).validate()  # bundled


@pytest.mark.parametrize("yaml_name", ["cifar10", "cifar100", "cifar_folder", "mnist_rot", "digits_rot"])
def test_data_yamls_are_valid_configs(yaml_name, tmp_path, monkeypatch):
    monkeypatch.setenv("GCNN_DATA_ROOT", str(tmp_path))
    cfg = DataConfig.from_mapping(OmegaConf.load(CONFIGS / "data" / f"{yaml_name}.yaml"))
    assert cfg.name == yaml_name
    assert cfg.root == str(tmp_path)


def test_data_yaml_root_defaults_to_data(monkeypatch):
    monkeypatch.delenv("GCNN_DATA_ROOT", raising=False)
    raw = OmegaConf.load(CONFIGS / "data" / "cifar10.yaml")
    assert OmegaConf.to_container(raw, resolve=True)["root"] == "data"


def test_paper_values_in_yamls():
    cifar10 = OmegaConf.load(CONFIGS / "data" / "cifar10.yaml")
    assert cifar10.preprocess == "zca" and cifar10.train_size is None
    assert OmegaConf.load(CONFIGS / "augment" / "crop_flip.yaml").pad == 2


@pytest.mark.parametrize("yaml_name", ["none", "crop_flip", "rot_flip", "reference_rotation"])
def test_augment_yamls_build(yaml_name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "augment" / f"{yaml_name}.yaml"))
    assert set(cfg) <= {"name", "pad"} and cfg["name"] == yaml_name
    x = torch.rand(2, 1, 8, 8)
    assert build_augment(**cfg)(x, torch.Generator().manual_seed(0)).shape == x.shape


# ----------------------------------------------------------------------------- CIFAR format
@pytest.mark.parametrize("kind, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_folder_round_trip(tmp_path, kind, num_classes):
    folder = write_cifar_folder(tmp_path, kind, n_train=50, n_test=20, seed=3)
    assert folder == tmp_path / cifar_layout(kind).folder
    written = read_written(folder, kind)
    train_x, train_y, test_x, test_y, classes = load_cifar(tmp_path, kind, download=False,
                                                           verify_checksums=False)
    assert train_x.dtype == torch.uint8 and train_x.shape == (50, 3, 32, 32)
    assert test_x.shape == (20, 3, 32, 32)
    assert torch.equal(train_x, written["train_x"])
    assert torch.equal(test_x, written["test_x"])
    assert torch.equal(train_y, torch.arange(50) % num_classes)
    assert torch.equal(test_y, torch.arange(20) % num_classes)
    assert classes == [f"class_{c:03d}" for c in range(num_classes)] == written["classes"]


def test_written_folder_is_readable_by_torchvision(tmp_path, monkeypatch, tiny_cifar):
    """The layout is torchvision's own: its CIFAR10 class reads our files (md5 check off)."""
    import torchvision.datasets.cifar as tv_cifar
    tiny_cifar()
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    tv = tv_cifar.CIFAR10(str(tmp_path), train=True, download=False)
    train_x, train_y, _, _, classes = load_cifar(tmp_path, "cifar10", download=False,
                                                 verify_checksums=False)
    assert torch.equal(torch.from_numpy(tv.data).permute(0, 3, 1, 2), train_x)
    assert tv.targets == train_y.tolist() and tv.classes == classes


def test_build_data_on_cifar_folder(tmp_path):
    write_cifar_folder(tmp_path, "cifar100", n_train=200, n_test=20)
    written = read_written(tmp_path / "cifar-100-python", "cifar100")
    bundle = build_data(folder_cfg(tmp_path, "cifar100"))
    assert (bundle.num_classes, bundle.in_channels, bundle.train_x.shape[-1]) == (100, 3, 32)
    assert bundle.train_x.dtype == torch.float32 and bundle.train_y.dtype == torch.int64
    assert torch.equal(bundle.train_x, written["train_x"].float() / 255)
    assert torch.equal(bundle.test_y, written["test_y"])
    assert bundle.val_x is None and bundle.val_y is None
    assert bundle.name == "cifar_folder" and bundle.classes == written["classes"]


def test_cifar_folder_root_may_be_the_folder_itself(tmp_path, tiny_cifar):
    folder = tiny_cifar()
    bundle = build_data(folder_cfg(folder))
    assert bundle.train_x.shape == (50, 3, 32, 32)


def test_python2_style_pickles_are_read(tmp_path, tiny_cifar):
    """The official files: bytes keys, bytes class names, numpy.core module paths."""
    folder = tiny_cifar()
    written = read_written(folder, "cifar10")
    for name in ["data_batch_1", "batches.meta"]:
        with open(folder / name, "rb") as f:
            obj = pickle.load(f)
        obj = {k.encode(): ([n.encode() for n in v] if k == "label_names" else v)
               for k, v in obj.items()}
        blob = pickle.dumps(obj, protocol=2)
        assert (b"numpy._core.multiarray" in blob) == (name == "data_batch_1")
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(blob)
    train_x, _, _, _, classes = load_cifar(tmp_path, "cifar10", download=False, verify_checksums=False)
    assert torch.equal(train_x, written["train_x"])
    assert classes == written["classes"]


# ----------------------------------------------------------------------------- data errors
def data_error(cfg: dict) -> str:
    """The message of the DataError that build_data(cfg) raises: checked to be one line."""
    with pytest.raises(DataError) as err:
        build_data(cfg)
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


def rewrite(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def test_checksum_on_for_own_folder_names_the_file(tmp_path, tiny_cifar):
    folder = tiny_cifar()
    message = data_error(folder_cfg(tmp_path, verify_checksums=True))
    assert f"checksum mismatch for {folder / 'data_batch_1'}" in message
    assert "data.verify_checksums=false" in message


def test_checksum_accepts_official_md5(tmp_path, monkeypatch, tiny_cifar):
    folder = tiny_cifar()
    real_md5 = cifar_module.md5_of
    official = dict(cifar_layout("cifar10").all_files)
    # pretend every file but the test batch is official: the error names exactly that file
    monkeypatch.setattr(cifar_module, "md5_of",
                        lambda p: real_md5(p) if p.name == "test_batch" else official[p.name])
    with pytest.raises(DataError, match=f"checksum mismatch for {folder / 'test_batch'}:"):
        load_cifar(tmp_path, "cifar10", download=False, verify_checksums=True)
    monkeypatch.setattr(cifar_module, "md5_of", lambda p: official[p.name])
    assert len(load_cifar(tmp_path, "cifar10", download=False, verify_checksums=True)[1]) == 50


@pytest.mark.parametrize("damage, expected", [
    (lambda blob: b"", r"^{path} is empty \(0 bytes\); replace it with an intact copy"),
    (lambda blob: blob[: len(blob) // 2], r"^could not read {path} as a CIFAR pickle \(.*\); "
                                          r"the file is truncated"),
    (lambda blob: b"<html>Not found</html>\n", r"^could not read {path} as a CIFAR pickle "
                                               r"\(UnpicklingError: .*not in the CIFAR python"),
    (lambda blob: pickle.dumps([1, 2, 3]), r"^{path} holds a pickled list, not the dict"),
], ids=["empty", "truncated", "garbage", "not-a-dict"])
def test_damaged_file_is_a_one_line_error_naming_it(tmp_path, tiny_cifar, damage, expected):
    path = tiny_cifar() / "data_batch_3"
    path.write_bytes(damage(path.read_bytes()))
    assert re.search(expected.format(path=re.escape(str(path))),
                     data_error(folder_cfg(tmp_path)))


def test_missing_file_names_what_to_put_where(tmp_path, tiny_cifar):
    folder = tiny_cifar()
    (folder / "data_batch_4").unlink()
    message = data_error(folder_cfg(tmp_path))
    assert f"{folder} lacks data_batch_4 " in message
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, " \
           "batches.meta" in message and "cifar-10-python.tar.gz" in message


def test_pickled_code_is_refused(tmp_path, tiny_cifar):
    folder = tiny_cifar()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": Evil()}))
    assert "refusing to unpickle builtins.print" in data_error(folder_cfg(tmp_path))


@pytest.mark.parametrize("data, expected", [
    (np.zeros((4, 100), np.uint8), r"'data' has shape \(4, 100\) and dtype uint8"),
    (np.zeros((4, 3072), np.float64), r"'data' has shape \(4, 3072\) and dtype float64"),
    (np.zeros((4, 3, 32, 32), np.uint8), r"'data' has shape \(4, 3, 32, 32\) and dtype uint8"),
    ([[0] * 3072] * 4, r"'data' is a list"),
    (None, r"has no 'data' entry \(keys: \['labels'\]\)"),
], ids=["short-rows", "float64", "4d", "list", "absent"])
def test_wrong_data_array_is_a_clear_error(tmp_path, tiny_cifar, data, expected):
    path = tiny_cifar() / "test_batch"
    rewrite(path, {"labels": [0] * 4} if data is None else {"data": data, "labels": [0] * 4})
    message = data_error(folder_cfg(tmp_path))
    assert message.startswith(str(path))
    assert re.search(expected, message) and r"expected a (N, 3072) uint8 array" in message


@pytest.mark.parametrize("labels, expected", [
    ([12, 1, 2, 3], "label 12 (image 0) in 'labels' is out of range for cifar10's 10 classes; "
                    "expected 0..9"),
    ([0, 1, -1, 3], "label -1 (image 2) in 'labels' is out of range"),
    ([0, 3.5, 2, 3], "label 3.5 (image 1) in 'labels' is not an integer class index; "
                     "expected integers 0..9"),
    (np.array([0, 1, 2, 3.5]), "label 3.5 (image 3) in 'labels' is not an integer class index"),
    ([0, 1, float("nan"), 3], "label nan (image 2) in 'labels' is not an integer class index"),
    ([0, "cat", 2, 3], "label 'cat' (image 1) in 'labels' is not an integer class index"),
    ([0, True, 2, 3], "label True (image 1) in 'labels' is not an integer class index"),
    ([0, 1, 2], "'labels' has shape (3,) but 'data' holds 4 images"),
    ([[0, 1]] * 4, "'labels' has shape (4, 2) but 'data' holds 4 images"),
], ids=["too-big", "negative", "float", "float-array", "nan", "string", "bool", "count", "2d"])
def test_bad_labels_are_a_clear_error(tmp_path, tiny_cifar, labels, expected):
    path = tiny_cifar() / "test_batch"
    rewrite(path, {"data": np.zeros((4, 3072), np.uint8), "labels": labels})
    assert data_error(folder_cfg(tmp_path)).startswith(f"{path}: {expected}")


def test_integer_valued_float_labels_are_accepted(tmp_path, tiny_cifar):
    path = tiny_cifar() / "test_batch"
    rewrite(path, {"data": np.zeros((4, 3072), np.uint8), "labels": np.array([0.0, 9.0, 2.0, 3.0])})
    test_y = load_cifar(tmp_path, "cifar10", download=False, verify_checksums=False)[3]
    assert test_y.dtype == torch.int64 and test_y.tolist() == [0, 9, 2, 3]


@pytest.mark.parametrize("meta, expected", [
    ({"num_vis": 3072}, r"has no 'label_names' entry \(keys: \['num_vis'\]\); expected the list "
                        r"of 10 class names"),
    ({"label_names": ["a", "b"]}, r": 'label_names' lists 2 class names; expected 10 for cifar10"),
    ({"label_names": "airplane"}, r": 'label_names' is not a list of strings"),
    ({"fine_label_names": [str(c) for c in range(100)]},
     r"has no 'label_names' entry .* it looks like cifar100; set data.format=cifar100$"),
], ids=["no-names", "wrong-count", "not-a-list", "cifar100-meta"])
def test_bad_meta_is_a_clear_error(tmp_path, tiny_cifar, meta, expected):
    path = tiny_cifar() / "batches.meta"
    rewrite(path, meta)
    message = data_error(folder_cfg(tmp_path))
    assert message.startswith(str(path)) and re.search(expected, message)


def test_cifar100_batch_in_a_cifar10_folder_suggests_the_format(tmp_path, tiny_cifar):
    path = tiny_cifar() / "test_batch"
    rewrite(path, {"data": np.zeros((4, 3072), np.uint8), "fine_labels": [0] * 4,
                   "coarse_labels": [0] * 4})
    assert data_error(folder_cfg(tmp_path)).endswith(
        "it looks like cifar100; set data.format=cifar100")


@pytest.mark.parametrize("inside", [True, False], ids=["in-subfolder", "flat"])
def test_folder_in_the_other_format_suggests_it(tmp_path, tiny_cifar, inside):
    folder = tiny_cifar("cifar100", n_train=100)
    root = tmp_path if inside else folder
    message = data_error(folder_cfg(root, "cifar10"))
    assert message.startswith(f"{root} holds cifar100 files, not cifar10 ones")
    assert message.endswith("it looks like cifar100; set data.format=cifar100")
    tiny_cifar("cifar10", root=tmp_path / "ten")
    assert data_error(folder_cfg(tmp_path / "ten", "cifar100")).endswith(
        "it looks like cifar10; set data.format=cifar10")


def test_official_name_on_the_other_format_suggests_the_data_set(tmp_path, tiny_cifar):
    tiny_cifar("cifar100", n_train=100)
    message = data_error(dict(name="cifar10", root=str(tmp_path), download=False,
                              verify_checksums=False, preprocess="none"))
    assert message.endswith("it looks like cifar100; use data=cifar100 (or data=cifar_folder "
                            "data.format=cifar100)")


def test_root_that_is_a_file_is_a_clear_error(tmp_path):
    root = tmp_path / "cifar.tar.gz"
    root.write_bytes(b"not a folder")
    for name in ("cifar10", "cifar_folder", "digits_rot"):
        with pytest.raises(DataError, match=rf"^data.root='{re.escape(str(root))}' is a file, "
                                            r"not a folder; set data.root to a folder"):
            DataConfig(name=name, root=str(root)).validate()
    with pytest.raises(DataError, match="is a file, not a folder; set data.root to a folder "
                                        "that holds cifar-10-batches-py/"):
        build_data(dict(name="cifar10", root=str(root)))  # refused before any download


@pytest.mark.parametrize("sizes, expected", [
    (dict(val_size=50, train_size=151), "data.train_size=151 is larger than the 150 training "
                                        "images left after data.val_size=50; lower "
                                        "data.train_size or data.val_size"),
    (dict(train_size=201), "data.train_size=201 is larger than the 200 training images of "
                           "cifar_folder; lower data.train_size"),
    (dict(val_size=200), "data.val_size=200 leaves no training images: the 200 training images "
                         "of cifar_folder must also hold the training split; lower data.val_size"),
    (dict(val_size=5), "data.val_size=5 is smaller than the number of classes (10)"),
    (dict(val_size=50, train_size=5), "data.train_size=5 is smaller than the number of classes"),
], ids=["train-after-val", "train", "val", "val-below-classes", "train-below-classes"])
def test_split_larger_than_the_data_names_the_split(tmp_path, tiny_cifar, sizes, expected):
    tiny_cifar(n_train=200)
    assert data_error(folder_cfg(tmp_path, **sizes)).startswith(expected)


def test_unbalanced_classes_name_the_split_and_its_pool(tmp_path, tiny_cifar):
    folder = tiny_cifar(n_train=200)
    batch = load_pickle(folder / "data_batch_1")
    batch["labels"] = [1] * len(batch["labels"])  # class 0 loses its 4 images of batch 1
    rewrite(folder / "data_batch_1", batch)
    assert data_error(folder_cfg(tmp_path, val_size=50, train_size=140)).startswith(
        "data.train_size=140 needs 14 images of class 0 but only 11 are available in the 150 "
        "training images left after data.val_size=50; the largest balanced subset has")


def test_offline_download_falls_back_to_existing_copy(tmp_path, monkeypatch, tiny_cifar):
    import torchvision.datasets as tv_datasets
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(tv_datasets, "CIFAR10", offline)
    cfg = dict(name="cifar10", root=str(tmp_path), download=True, verify_checksums=False,
               preprocess="none")
    with pytest.warns(UserWarning, match="could not download cifar10"):
        with pytest.raises(ValueError, match="downloading it failed"):
            build_data(cfg)
    assert len(calls) == 1
    tiny_cifar()
    assert build_data(cfg).train_x.shape == (50, 3, 32, 32)
    assert len(calls) == 1  # complete copy on disk: no download attempted


def test_download_uses_torchvision_then_reads_files(tmp_path, monkeypatch):
    import torchvision.datasets as tv_datasets
    calls = []

    def fake_cifar100(root, train=True, download=False):
        calls.append((root, download))
        write_cifar_folder(root, "cifar100", n_train=100, n_test=20)

    monkeypatch.setattr(tv_datasets, "CIFAR100", fake_cifar100)
    bundle = build_data(dict(name="cifar100", root=str(tmp_path), verify_checksums=False,
                             preprocess="none"))
    assert calls == [(str(tmp_path), True)] and bundle.num_classes == 100


def test_cifar_folder_is_never_downloaded(tmp_path, monkeypatch):
    import torchvision.datasets as tv_datasets
    monkeypatch.setattr(tv_datasets, "CIFAR10", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(ValueError, match="cifar10 not found"):
        build_data(folder_cfg(tmp_path, download=True))


# ----------------------------------------------------------------------------- subsets
def test_class_quotas_floor_plus_remainder():
    assert class_quotas(23, 10) == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert class_quotas(10, 10) == [1] * 10
    with pytest.raises(DataError, match=r"^size=9 is smaller than the number of classes \(10\)"):
        class_quotas(9, 10)


def test_balanced_subset_counts_nesting_and_determinism():
    labels = torch.arange(300) % 10
    for size in (10, 57, 100, 300):
        idx = balanced_subset(labels, size, 10, seed=4)
        assert per_class(labels[idx], 10) == class_quotas(size, 10)
        assert len(set(idx.tolist())) == size
    small, large = balanced_subset(labels, 40, 10, 4), balanced_subset(labels, 120, 10, 4)
    assert set(small.tolist()) <= set(large.tolist())
    assert torch.equal(small, balanced_subset(labels, 40, 10, 4))
    assert not torch.equal(small, balanced_subset(labels, 40, 10, 5))


def test_balanced_subset_too_large():
    labels = torch.tensor([0] * 5 + [1] * 3)
    assert len(balanced_subset(labels, 7, 2, 0)) == 7  # 4 + 3
    with pytest.raises(DataError, match="^size=8 needs 4 images of class 1 but only 3 are "
                                        "available in the labels given; .* has 7 images$"):
        balanced_subset(labels, 8, 2, 0)


def test_split_off_balanced_is_a_partition():
    labels = torch.arange(100) % 4
    kept, held = split_off_balanced(labels, 20, 4, seed=0)
    assert per_class(labels[held], 4) == [5, 5, 5, 5]
    assert sorted(kept.tolist() + held.tolist()) == list(range(100))


def test_build_data_val_and_train_size(tmp_path):
    write_cifar_folder(tmp_path, "cifar10", n_train=200, n_test=20)
    raw = read_written(tmp_path / "cifar-10-batches-py", "cifar10")["train_x"].float() / 255
    bundle = build_data(folder_cfg(tmp_path, val_size=50, train_size=73, seed=1))
    assert per_class(bundle.val_y, 10) == [5] * 10
    assert per_class(bundle.train_y, 10) == class_quotas(73, 10)

    def rows(x):  # index of each image in the written training set
        return [int((raw == img).flatten(1).all(1).nonzero()) for img in x]

    val_rows, train_rows = rows(bundle.val_x), rows(bundle.train_x)
    assert not set(val_rows) & set(train_rows)


# ----------------------------------------------------------------------------- preprocessing
def correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return torch.randn(n, d, generator=gen, dtype=torch.float64) @ mixing + 3.0


def covariance(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(len(x), -1).double()
    centred = flat - flat.mean(0)
    return centred.T @ centred / len(flat)


def test_fit_zca_whitens_to_identity():
    """Well-conditioned (4000 images, 12 dimensions): no shrinkage, exactly the reference
    ZCA ``U diag(1 / sqrt(lambda + 1e-5)) U^T``."""
    x = correlated(4000, 12).reshape(4000, 3, 2, 2)
    mean, whitening, shrinkage = fit_zca(x)
    white = (x.reshape(4000, -1) - mean) @ whitening
    assert shrinkage == 0.0
    evals, evecs = torch.linalg.eigh(covariance(x))
    reference = (evecs * (evals.clamp_min(0) + ZCA_EPS).rsqrt()) @ evecs.T
    assert torch.allclose(whitening, reference, rtol=1e-9, atol=1e-12)
    assert torch.allclose(covariance(white), torch.eye(12, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(whitening, whitening.T)  # ZCA: symmetric, unlike PCA whitening
    assert not torch.allclose(covariance(x), torch.eye(12, dtype=torch.float64), atol=0.5)


def natural_images(n: int, size: int, seed: int) -> torch.Tensor:
    """CIFAR-like ``(n, 3, size, size)`` uint8-valued images in [0, 1]: Gaussian noise with
    a 1/f^2.2 amplitude spectrum (natural images: ~1/f, steeper after CIFAR's
    downsampling), correlated colour channels, random contrast and brightness. Under
    the reference ZCA at 32x32 they give train/test-input RMS 0.26/49 at 200 images
    (the issue measured 0.26/62 on CIFAR)."""
    gen = torch.Generator().manual_seed(seed)
    fy, fx = torch.fft.fftfreq(size).view(-1, 1), torch.fft.rfftfreq(size).view(1, -1)
    amplitude = (fx ** 2 + fy ** 2).sqrt().clamp_min(1.0 / size) ** -2.2
    noise = torch.randn(n, 3, size, size, generator=gen)
    opponent = torch.fft.irfft2(torch.fft.rfft2(noise) * amplitude, s=(size, size))
    opponent = opponent * torch.tensor([1.0, 0.3, 0.3]).view(1, 3, 1, 1)  # luminance, 2 chroma
    rgb = torch.tensor([[1.0, 1.0, 0.0], [1.0, -0.5, 0.8], [1.0, -0.5, -0.8]])
    images = torch.einsum("ck,nkhw->nchw", rgb, opponent)
    images = images / images.flatten(1).std(1).view(-1, 1, 1, 1)
    contrast = 0.1 + 0.2 * torch.rand(n, 1, 1, 1, generator=gen)
    brightness = 0.3 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    return ((images * contrast + brightness).clamp(0, 1) * 255).round() / 255


def rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


def zca_rms_ratio(train_x: torch.Tensor, test_x: torch.Tensor, **fit_args) -> tuple[float, float]:
    """``(test-input RMS / train-input RMS, shrinkage)`` of a ZCA fitted on ``train_x``."""
    mean, whitening, shrinkage = fit_zca(train_x, per_image=contrast_normalize, **fit_args)
    prep = Preprocessor("zca", mean, whitening.float())
    return rms(prep.apply(test_x)) / rms(prep.apply(train_x)), shrinkage


@pytest.fixture(scope="module")
def natural_16px():
    """16x16 CIFAR-like images (D = 768): 12500 for training (D x 16.3, CIFAR's 50000 /
    3072) and 1000 for testing."""
    return natural_images(12500, 16, seed=1), natural_images(1000, 16, seed=2)


@pytest.mark.parametrize("train_size", [50, 250, 12500])
def test_zca_on_subsets_keeps_test_inputs_on_the_training_scale(natural_16px, train_size):
    """The issue's bar at train_size 200, 1000 and full CIFAR, scaled to D = 768 (the same
    N / D: 50, 250, 12500): test-input RMS within 1.5x of train-input RMS. The full set is
    well-conditioned: no shrinkage, the reference ZCA."""
    train_x, test_x = natural_16px
    ratio, shrinkage = zca_rms_ratio(train_x[:train_size], test_x)
    assert 1 / 1.5 <= ratio <= 1.5
    assert (shrinkage == 0.0) == (train_size == 12500)


def test_unshrunk_zca_on_a_subset_blows_up_test_inputs(natural_16px):
    """The defect the shrinkage removes: the reference fit on 50 of 768 dimensions."""
    train_x, test_x = natural_16px
    ratio, shrinkage = zca_rms_ratio(train_x[:50], test_x, max_ratio=float("inf"))
    assert shrinkage == 0.0 and ratio > 100


@pytest.mark.slow
@pytest.mark.parametrize("train_size", [200, 1000])
def test_zca_on_cifar_sized_subsets(train_size):
    """As above at CIFAR's own size (D = 3072; about a minute per fit on 2 CPU cores)."""
    ratio, shrinkage = zca_rms_ratio(natural_images(train_size, 32, seed=1),
                                     natural_images(1000, 32, seed=2))
    assert 1 / 1.5 <= ratio <= 1.5 and shrinkage > 0


def test_zca_cache_keeps_the_most_recently_used_fits(tmp_path, monkeypatch):
    monkeypatch.setattr(preprocess_module, "CACHE_MAX_FITS", 2)
    x = torch.rand(30, 1, 4, 4)

    def fit(dataset):
        return fit_preprocessor("zca", x, dataset=dataset, train_indices=torch.arange(30),
                                cache_dir=tmp_path)

    def cached():
        return sorted(tmp_path.glob("zca-*.pt"), key=lambda p: p.stat().st_mtime_ns)

    fit("a")
    (path_a,) = cached()
    fit("b")
    (path_b,) = set(cached()) - {path_a}
    os.utime(path_a, ns=(1, 1))  # a is the oldest ...
    os.utime(path_b, ns=(2, 2))
    assert fit("a").from_cache  # ... until it is used again
    assert not fit("c").from_cache
    assert path_a.is_file() and not path_b.is_file() and len(cached()) == 2
    assert not fit("b").from_cache  # evicted: refitted


def test_zca_cache_stores_float32(tmp_path):
    x = torch.rand(30, 3, 4, 4)
    fresh = fit_preprocessor("zca", x, dataset="d", train_indices=torch.arange(30),
                             cache_dir=tmp_path)
    again = fit_preprocessor("zca", x, dataset="d", train_indices=torch.arange(30),
                             cache_dir=tmp_path)
    assert fresh.transform.dtype == torch.float32 and again.from_cache
    assert torch.equal(fresh.apply(x), again.apply(x)) and again.shrinkage == fresh.shrinkage


def test_contrast_normalize_per_image():
    x = correlated(50, 12).reshape(50, 3, 2, 2)
    out = contrast_normalize(x).reshape(50, -1)
    assert torch.allclose(out.mean(1), torch.zeros(50, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.pow(2).mean(1), torch.ones(50, dtype=torch.float64), atol=1e-12)
    assert torch.equal(contrast_normalize(torch.full((1, 3, 2, 2), 0.7)), torch.zeros(1, 3, 2, 2))


def test_zca_preprocessor_output_covariance(tmp_path):
    """Contrast normalisation removes one direction (the image mean), so the whitened
    covariance is the projector onto the others: I - 11^T / D."""
    x = torch.sigmoid(correlated(3000, 12)).reshape(3000, 3, 2, 2).float()
    prep = fit_preprocessor("zca", x, dataset="synthetic", train_indices=torch.arange(3000),
                            cache_dir=None)
    out = prep.apply(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    projector = torch.eye(12, dtype=torch.float64) - 1.0 / 12
    assert torch.allclose(covariance(out), projector, atol=1e-3)


def test_standardize_per_channel():
    x = torch.rand(500, 3, 4, 4) * torch.tensor([1.0, 0.5, 0.1]).view(1, 3, 1, 1)
    prep = fit_preprocessor("standardize", x, dataset="synthetic",
                            train_indices=torch.arange(500), cache_dir=None)
    out = prep.apply(x).double()
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(out.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64),
                          atol=1e-5)
    mean, std = fit_standardize(x)
    assert std[2] < std[0]


def test_none_keeps_unit_range(tmp_path):
    x = torch.rand(5, 3, 4, 4)
    prep = fit_preprocessor("none", x, dataset="synthetic", train_indices=torch.arange(5),
                            cache_dir=tmp_path)
    assert torch.equal(prep.apply(x), x) and not list(tmp_path.iterdir())


@pytest.mark.parametrize("method", ["zca", "standardize"])
def test_fit_is_cached_and_refit_on_other_inputs(tmp_path, method):
    x = torch.rand(200, 3, 4, 4)
    idx = torch.arange(200)

    def fit(**changes):
        kwargs = dict(dataset="synthetic", train_indices=idx, cache_dir=tmp_path, x=x)
        kwargs.update(changes)
        return fit_preprocessor(method, kwargs.pop("x"), **kwargs)

    first = fit()
    assert not first.from_cache and len(list(tmp_path.glob(f"{method}-*.pt"))) == 1
    again = fit()
    assert again.from_cache
    assert torch.equal(again.mean, first.mean) and torch.equal(again.transform, first.transform)
    for change in ({"train_indices": idx + 1}, {"dataset": "other"}, {"x": x.flip(0)}):
        assert not fit(**change).from_cache
    assert len(list(tmp_path.glob(f"{method}-*.pt"))) == 4
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_corrupt_cache_is_refitted(tmp_path):
    x, idx = torch.rand(20, 1, 4, 4), torch.arange(20)
    fit_preprocessor("zca", x, dataset="d", train_indices=idx, cache_dir=tmp_path)
    (path,) = tmp_path.glob("zca-*.pt")
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable preprocessing cache"):
        refit = fit_preprocessor("zca", x, dataset="d", train_indices=idx, cache_dir=tmp_path)
    assert not refit.from_cache
    assert fit_preprocessor("zca", x, dataset="d", train_indices=idx, cache_dir=tmp_path).from_cache


def test_build_data_reuses_cache_next_to_data(tmp_path):
    write_cifar_folder(tmp_path, "cifar10", n_train=100, n_test=20)
    first = build_data(folder_cfg(tmp_path, preprocess="standardize", train_size=50))
    second = build_data(folder_cfg(tmp_path, preprocess="standardize", train_size=50))
    assert torch.equal(first.train_x, second.train_x)
    assert len(list((tmp_path / ".cache").glob("standardize-*.pt"))) == 1
    build_data(folder_cfg(tmp_path, preprocess="standardize", train_size=60))
    assert len(list((tmp_path / ".cache").glob("standardize-*.pt"))) == 2


def test_unknown_preprocess_in_fit():
    with pytest.raises(ValueError, match=r"^data.preprocess='pca' is not valid; expected one of "
                                         r"\['zca', 'standardize', 'none'\]$"):
        fit_preprocessor("pca", torch.rand(2, 1, 2, 2), dataset="d",
                         train_indices=torch.arange(2), cache_dir=None)


# ----------------------------------------------------------------------------- digits_rot
@pytest.fixture(scope="module")
def digits_raw():
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    return images, torch.as_tensor(digits.target)


def test_rotate_images_quarter_turn_is_rot90():
    x = torch.rand(3, 2, 9, 9)
    assert torch.allclose(rotate_images(x, torch.zeros(3)), x, atol=1e-6)
    quarter = rotate_images(x, torch.full((3,), math.pi / 2))
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    assert not torch.allclose(quarter, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-2)


def test_digits_rot_shapes_split_and_range():
    train_x, train_y, test_x, test_y, classes = load_digits_rot(image_size=16, seed=0)
    assert train_x.shape == (1000, 1, 16, 16) and test_x.shape == (797, 1, 16, 16)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert per_class(train_y, 10) == [100] * 10 and classes == [str(d) for d in range(10)]
    assert float(train_x.min()) >= 0 and float(train_x.max()) <= 1
    assert load_digits_rot(image_size=12, seed=0)[0].shape == (1000, 1, 12, 12)


def test_digits_rot_deterministic_per_seed():
    a, b, c = (load_digits_rot(seed=s)[0] for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(load_digits_rot(seed=0)[1], load_digits_rot(seed=1)[1])  # fixed split


def test_digits_rot_rotation_angles_are_spread(digits_raw):
    """Recover each training image's angle by matching rotated copies of the upright
    digit: every image is a rotation of its digit, and the angles cover the circle."""
    images, labels = digits_raw
    train_idx, _ = digits_split(labels)
    upright = place_in_canvas(images[train_idx[:200]], 16)
    rotated = load_digits_rot(image_size=16, seed=0)[0][:200]
    candidates = torch.arange(72) * (2 * math.pi / 72)
    errors = torch.stack([
        (rotate_images(upright, torch.full((200,), float(a))) - rotated).abs().flatten(1).mean(1)
        for a in candidates])  # (72, 200)
    best_error, best = errors.min(0)
    unrotated_error = (upright - rotated).abs().flatten(1).mean(1)
    assert float(best_error.max()) < 0.02
    assert float((unrotated_error > 5 * best_error).float().mean()) > 0.8
    quadrant_counts = torch.bincount(best // 18, minlength=4)
    assert int(quadrant_counts.min()) >= 30  # ~50 each for uniform angles


def test_build_data_digits_rot(tmp_path):
    bundle = build_data(dict(name="digits_rot", root=str(tmp_path), train_size=30,
                             val_size=100, preprocess="zca"))
    assert (bundle.num_classes, bundle.in_channels, bundle.train_x.shape[-1]) == (10, 1, 16)
    assert per_class(bundle.train_y, 10) == [3] * 10 and per_class(bundle.val_y, 10) == [10] * 10
    assert bundle.test_x.shape == (797, 1, 16, 16) and bundle.train_x.dtype == torch.float32
    assert len(list((tmp_path / ".cache").glob("zca-*.pt"))) == 1
    assert 0 < bundle.zca_shrinkage < 1  # 30 images, 256 dimensions
    assert (len(bundle.train_x), len(bundle.val_x), bundle.name) == (30, 100, "digits_rot")
    assert "tensor" not in repr(bundle)


def test_build_data_digits_train_size_too_large(tmp_path):
    with pytest.raises(DataError, match="^data.train_size=1001 is larger than the 1000 training "
                                        "images of digits_rot; lower data.train_size$"):
        build_data(dict(name="digits_rot", root=str(tmp_path), train_size=1001))


def test_a_missing_cifar_folder_is_refused_before_any_work(tmp_path):
    with pytest.raises(DataError, match=r"data.root='.*nowhere' does not exist; data=cifar_folder reads your own"):
        DataConfig(name="cifar_folder", root=str(tmp_path / "nowhere")).validate()
