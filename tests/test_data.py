"""repro.data: config, CIFAR-format reading/writing, subsets, preprocessing, digits_rot.

No test touches the network: CIFAR data are tiny folders written by
``write_cifar_folder`` and torchvision's downloader is replaced by fakes.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import repro.data.cifar as cifar_module
from repro.data import DataConfig, build_augment, build_data, write_cifar_folder
from repro.data.cifar import load_cifar
from repro.data.cifar_format import cifar_layout
from repro.data.digits import digits_split, load_digits_rot, place_in_canvas, rotate_images
from repro.data.preprocess import (contrast_normalize, fit_preprocessor, fit_standardize,
                                   fit_zca)
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
    ({"root": ""}, "data.root=''"),
    ({"colour": "red"}, "unknown data config key(s) ['colour']"),
])
def test_config_rejects_bad_values(override, needle):
    with pytest.raises(ValueError) as err:
        DataConfig.from_mapping(override)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_config_names_the_choices():
    choices = r"\['cifar10', 'cifar100', 'cifar_folder', 'digits_rot'\]"
    with pytest.raises(ValueError, match=choices):
        DataConfig(name="mnist").validate()
    with pytest.raises(ValueError, match=r"\['zca', 'standardize', 'none'\]"):
        DataConfig(preprocess="whiten").validate()


def test_config_missing_root_without_download(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="does not exist and data.download=false; create it and "
                                         r"put cifar-10-batches-py/ \(data_batch_1..5"):
        DataConfig(name="cifar10", root=str(missing), download=False).validate()
    with pytest.raises(ValueError, match=r"put cifar-100-python/ \(train, test, meta\)"):
        DataConfig(name="cifar_folder", format="cifar100", root=str(missing),
                   download=False).validate()
    DataConfig(name="cifar10", root=str(missing), download=True).validate()  # may be fetched
    DataConfig(name="digits_rot", root=str(missing), download=False).validate()  # bundled


@pytest.mark.parametrize("yaml_name", ["cifar10", "cifar100", "cifar_folder", "digits_rot"])
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


@pytest.mark.parametrize("yaml_name", ["none", "crop_flip", "rot_flip"])
def test_augment_yamls_build(yaml_name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIGS / "augment" / f"{yaml_name}.yaml"))
    assert set(cfg) == {"name", "pad"} and cfg["name"] == yaml_name
    x = torch.rand(2, 1, 8, 8)
    assert build_augment(**cfg)(x, torch.Generator().manual_seed(0)).shape == x.shape


# ----------------------------------------------------------------------------- CIFAR format
@pytest.mark.parametrize("kind, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_folder_round_trip(tmp_path, kind, num_classes):
    folder = write_cifar_folder(tmp_path, kind, n_train=50, n_test=20, seed=3)
    assert folder == tmp_path / cifar_layout(kind).folder
    written = read_written(folder, kind)
    splits = load_cifar(tmp_path, kind, download=False, verify_checksums=False)
    assert splits.train_x.dtype == torch.uint8 and splits.train_x.shape == (50, 3, 32, 32)
    assert splits.test_x.shape == (20, 3, 32, 32)
    assert torch.equal(splits.train_x, written["train_x"])
    assert torch.equal(splits.test_x, written["test_x"])
    assert torch.equal(splits.train_y, torch.arange(50) % num_classes)
    assert torch.equal(splits.test_y, torch.arange(20) % num_classes)
    assert splits.classes == [f"class_{c:03d}" for c in range(num_classes)] == written["classes"]


def test_written_folder_is_readable_by_torchvision(tmp_path, monkeypatch):
    """The layout is torchvision's own: its CIFAR10 class reads our files (md5 check off)."""
    import torchvision.datasets.cifar as tv_cifar
    write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    tv = tv_cifar.CIFAR10(str(tmp_path), train=True, download=False)
    ours = load_cifar(tmp_path, "cifar10", download=False, verify_checksums=False)
    assert torch.equal(torch.from_numpy(tv.data).permute(0, 3, 1, 2), ours.train_x)
    assert tv.targets == ours.train_y.tolist() and tv.classes == ours.classes


def test_build_data_on_cifar_folder(tmp_path):
    write_cifar_folder(tmp_path, "cifar100", n_train=200, n_test=20)
    written = read_written(tmp_path / "cifar-100-python", "cifar100")
    bundle = build_data(folder_cfg(tmp_path, "cifar100"))
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (100, 3, 32)
    assert bundle.train_x.dtype == torch.float32 and bundle.train_y.dtype == torch.int64
    assert torch.equal(bundle.train_x, written["train_x"].float() / 255)
    assert torch.equal(bundle.test_y, written["test_y"])
    assert bundle.val_x is None and bundle.val_y is None
    assert bundle.name == "cifar_folder" and bundle.classes == written["classes"]


def test_cifar_folder_root_may_be_the_folder_itself(tmp_path):
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
    bundle = build_data(folder_cfg(folder))
    assert bundle.train_x.shape == (50, 3, 32, 32)


def test_python2_style_pickles_are_read(tmp_path):
    """The official files: bytes keys, bytes class names, numpy.core module paths."""
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
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
    splits = load_cifar(tmp_path, "cifar10", download=False, verify_checksums=False)
    assert torch.equal(splits.train_x, written["train_x"])
    assert splits.classes == written["classes"]


def test_checksum_on_for_own_folder_names_the_file(tmp_path):
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
    with pytest.raises(ValueError) as err:
        build_data(folder_cfg(tmp_path, verify_checksums=True))
    message = str(err.value)
    assert f"checksum mismatch for {folder / 'data_batch_1'}" in message
    assert "data.verify_checksums=false" in message


def test_checksum_accepts_official_md5(tmp_path, monkeypatch):
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
    real_md5 = cifar_module.md5_of
    official = dict(cifar_layout("cifar10").all_files)
    # pretend every file but the test batch is official: the error names exactly that file
    monkeypatch.setattr(cifar_module, "md5_of",
                        lambda p: real_md5(p) if p.name == "test_batch" else official[p.name])
    with pytest.raises(ValueError, match=f"checksum mismatch for {folder / 'test_batch'}:"):
        load_cifar(tmp_path, "cifar10", download=False, verify_checksums=True)
    monkeypatch.setattr(cifar_module, "md5_of", lambda p: official[p.name])
    assert len(load_cifar(tmp_path, "cifar10", download=False, verify_checksums=True).train_y) == 50


def test_truncated_file_is_a_clear_error(tmp_path):
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
    blob = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=f"could not read {folder / 'data_batch_3'} .*truncated"):
        build_data(folder_cfg(tmp_path))


def test_wrong_shapes_are_a_clear_error(tmp_path):
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, f)
    expected = r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\), got uint8 \(4, 100"
    with pytest.raises(ValueError, match=expected):
        build_data(folder_cfg(tmp_path))


def test_pickled_code_is_refused(tmp_path):
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": Evil()}))
    with pytest.raises(ValueError, match="refusing to unpickle builtins.print"):
        build_data(folder_cfg(tmp_path))


def test_missing_file_names_what_to_put_where(tmp_path):
    folder = write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
    (folder / "data_batch_4").unlink()
    with pytest.raises(ValueError) as err:
        build_data(folder_cfg(tmp_path))
    message = str(err.value)
    assert f"{folder} lacks data_batch_4 " in message
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, " \
           "batches.meta" in message and "cifar-10-python.tar.gz" in message


def test_offline_download_falls_back_to_existing_copy(tmp_path, monkeypatch):
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
    write_cifar_folder(tmp_path, "cifar10", n_train=50, n_test=20)
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
    with pytest.raises(ValueError, match="subset size 9 is smaller than the number of classes 10"):
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
    with pytest.raises(ValueError, match="needs 4 images of class 1 but only 3 .* has 7 images"):
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
    with pytest.raises(ValueError, match="needs 16 images of class 0 but only 15"):
        build_data(folder_cfg(tmp_path, val_size=50, train_size=151))


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
    x = correlated(4000, 12).reshape(4000, 3, 2, 2)
    mean, whitening = fit_zca(x)
    white = (x.reshape(4000, -1) - mean) @ whitening
    assert torch.allclose(covariance(white), torch.eye(12, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(whitening, whitening.T)  # ZCA: symmetric, unlike PCA whitening
    assert not torch.allclose(covariance(x), torch.eye(12, dtype=torch.float64), atol=0.5)


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
    for change in ({"train_indices": idx + 1}, {"dataset": "other"}, {"x": x.flip(0)},
                   {"eps": 1e-3}):
        assert not fit(**change).from_cache
    assert len(list(tmp_path.glob(f"{method}-*.pt"))) == 5
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
    with pytest.raises(ValueError, match=r"preprocess='pca' is not one of"):
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
    assert (bundle.num_classes, bundle.in_channels, bundle.image_size) == (10, 1, 16)
    assert per_class(bundle.train_y, 10) == [3] * 10 and per_class(bundle.val_y, 10) == [10] * 10
    assert bundle.test_x.shape == (797, 1, 16, 16) and bundle.train_x.dtype == torch.float32
    assert len(list((tmp_path / ".cache").glob("zca-*.pt"))) == 1
    assert bundle.summary() == "digits_rot: 30 train / 100 val / 797 test, 1x16x16, 10 classes"
    assert "tensor" not in repr(bundle)


def test_build_data_digits_train_size_too_large(tmp_path):
    with pytest.raises(ValueError, match="needs 101 images of class 0"):
        build_data(dict(name="digits_rot", root=str(tmp_path), train_size=1001))
