"""Shared fixtures: groups, float64 inputs and the exact equivariance check."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

import gcnn

TOL = 1e-10  # float64: exact up to round-off
ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python scripts/<name>.py args`` in the repository root, as a user runs it (for tests of the CLI
    itself; everything else is tested through the package)."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args], cwd=ROOT, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(params=gcnn.GROUP_NAMES)
def group(request) -> gcnn.Group:
    return gcnn.get_group(request.param)



@pytest.fixture
def wandb_offline(tmp_path, monkeypatch) -> None:
    """wandb offline and silent, its folders under ``tmp_path``, no API key: never the network."""
    pytest.importorskip("wandb")
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path / "wandb-dir"),
                       "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_CONFIG_DIR": str(tmp_path / "config")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def check_equivariant() -> Callable[..., None]:
    """``check(module, x, group, invariant=None)``: :func:`gcnn.equivariance_error` (the
    worst sample over every group element) on float64 input is below :data:`TOL`."""
    def check(module, x, group, invariant: bool | None = None) -> None:
        assert x.dtype == torch.float64
        err = gcnn.equivariance_error(module, x, group, invariant=invariant)
        assert err < TOL, f"equivariance error {err:.3e} for group {gcnn.get_group(group).name}"
    return check


@pytest.fixture
def equivariance_error_of() -> Callable[..., float]:
    """:func:`gcnn.equivariance_error`, for tests that expect a large error."""
    return gcnn.equivariance_error


def _check_meta_build(build: Callable[[], nn.Module]) -> nn.Module:
    """Build with ``build()`` on the CPU (seed 0) and under ``torch.device("meta")``; materialise the
    meta one with ``to_empty(device="cpu")`` and ``reset_parameters()`` (seed 0) and check that it has
    the same parameters and buffers: names, shapes, dtypes and values. Returns the materialised one."""
    def tensors(module: nn.Module) -> dict[str, torch.Tensor]:
        return {**dict(module.named_parameters()), **dict(module.named_buffers())}

    torch.manual_seed(0)
    expected = tensors(build())
    with torch.device("meta"):
        module = build()
    assert expected and all(t.is_meta for t in tensors(module).values())
    module.to_empty(device="cpu")
    torch.manual_seed(0)
    module.reset_parameters()
    got = tensors(module)
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        assert (got[name].shape, got[name].dtype) == (tensor.shape, tensor.dtype), name
        assert torch.equal(got[name], tensor), name
    return module


@pytest.fixture
def check_meta_build() -> Callable[[Callable[[], nn.Module]], nn.Module]:
    """:func:`_check_meta_build`: a module built on the meta device materialises like a CPU-built one."""
    return _check_meta_build


def _full_stack(group: gcnn.Group) -> nn.Module:
    """Every layer kind in one float64 net, 9x9 input -> invariant (B, 6) output."""
    return nn.Sequential(
        nn.Dropout(0.2),
        gcnn.LiftingConv2d(3, 4, 3, group=group, padding=1),
        gcnn.GroupBatchNorm2d(4, group=group), nn.ReLU(),
        gcnn.GroupConv2d(4, 5, 3, group=group, stride=2, padding=1),      # 9 -> 5
        gcnn.GroupBatchNorm2d(5, group=group), nn.ReLU(), nn.Dropout(0.5),
        gcnn.SpatialPool2d(3, stride=2, padding=1),                         # 5 -> 3
        gcnn.GroupConv2d(5, 6, 1, group=group),
        gcnn.GroupPool(group=group, mode="max"),
        gcnn.GlobalAvgPool(),
    ).double()


@pytest.fixture
def full_stack() -> Callable[[gcnn.Group], nn.Module]:
    return _full_stack


# ----------------------------------------------------------------------------- CIFAR-format folders
@pytest.fixture
def tiny_cifar(tmp_path):
    """Factory ``tiny_cifar(kind="cifar10", n_train=50, n_test=20, root=tmp_path)``: write a
    small CIFAR-format folder of random images with ``repro.data.write_cifar_folder``
    and return the data-set folder (``root/cifar-10-batches-py`` or ``root/cifar-100-python``)."""
    from repro.data import write_cifar_folder

    def write(kind: str = "cifar10", n_train: int = 50, n_test: int = 20, root=None):
        return write_cifar_folder(tmp_path if root is None else root, kind, n_train=n_train,
                                  n_test=n_test)
    return write


# ----------------------------------------------------------------------------- MNIST-rot-format folders
@pytest.fixture
def tiny_mnist_rot(tmp_path):
    """Factory ``tiny_mnist_rot(n_train=30, n_test=20, root=tmp_path, seed=0)``: write the two
    ``.amat`` files of a small MNIST-rot folder with ``repro.data.write_mnist_rot_folder`` and
    return the data-set folder (``root/mnist_rotation_new``)."""
    from repro.data import write_mnist_rot_folder

    def write(n_train: int = 30, n_test: int = 20, root=None, seed: int = 0):
        return write_mnist_rot_folder(tmp_path if root is None else root, n_train=n_train,
                                      n_test=n_test, seed=seed)
    return write
