"""Preprocessing fitted on the training images, cached on disk.

* ``zca`` (the paper's reference code): per-image contrast normalisation
  (subtract the image's mean over all its pixels and channels, divide by its
  standard deviation) followed by ZCA whitening ``x -> (x - mu) W`` with
  ``W = U diag(1 / sqrt(lambda + eps)) U^T`` from the eigendecomposition of the
  training covariance (``eps = 1e-5``, float64).
* ``standardize``: subtract the per-channel mean, divide by the per-channel std
  of the training images.
* ``none``: the images as given, in [0, 1].

Images are ``(N, C, H, W)`` float tensors in [0, 1]. A fit is stored under
``<cache_dir>/<method>-<key>.pt`` (atomic write) where ``key`` hashes its
inputs: method, eps, data set name, training-subset indices and the training
images themselves, so a changed input never reuses a stale fit.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from repro.io import save_torch

__all__ = ["Preprocessor", "fit_preprocessor", "contrast_normalize", "fit_zca",
           "fit_standardize", "cache_key", "ZCA_EPS"]

ZCA_EPS = 1e-5  # reference code: added to the eigenvalues of the covariance
_CHUNK = 4096   # images per float64 chunk (bounds memory on 50k x 3072 CIFAR)
_FORMAT_VERSION = 1


@dataclass
class Preprocessor:
    """A fitted preprocessing; ``apply`` maps ``(N, C, H, W)`` to float32 of the same shape."""

    method: str
    mean: torch.Tensor | None = None       # zca: (D,), standardize: (C,)
    transform: torch.Tensor | None = None  # zca: whitening (D, D), standardize: std (C,)
    from_cache: bool = False

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return x.float()
        if self.method == "standardize":
            shape = (1, -1, 1, 1)
            return ((x.double() - self.mean.view(shape)) / self.transform.view(shape)).float()
        return _apply_zca(x, self.mean, self.transform)

    def state(self) -> dict[str, Any]:
        return {"version": _FORMAT_VERSION, "method": self.method,
                "mean": self.mean, "transform": self.transform}


def contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Per-image: subtract the mean over ``(C, H, W)``, divide by the (population)
    std; a constant image (std < 1e-8) becomes all zeros. Shape and dtype kept."""
    flat = x.reshape(len(x), -1).double()
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    centred = torch.where(std > 1e-8, centred, torch.zeros_like(centred))
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (centred / std).to(x.dtype).reshape(x.shape)


def fit_zca(x: torch.Tensor, eps: float = ZCA_EPS,
            per_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA of ``x`` ``(N, C, H, W)``, after ``per_image`` (e.g. :func:`contrast_normalize`)
    if given: float64 mean ``(D,)`` and whitening matrix ``(D, D)``, ``D = C*H*W``.
    Works in float64 chunks (on a GPU if there is one)."""
    flat = x.reshape(len(x), -1)
    prepare = per_image or (lambda chunk: chunk)
    device = _compute_device()
    mean = torch.zeros(flat.shape[1], dtype=torch.float64, device=device)
    for chunk in flat.split(_CHUNK):
        mean += prepare(chunk.to(device, torch.float64)).sum(dim=0)
    mean /= len(flat)
    cov = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64, device=device)
    for chunk in flat.split(_CHUNK):
        centred = prepare(chunk.to(device, torch.float64)) - mean
        cov += centred.T @ centred
    cov = (cov / len(flat)).cpu()
    evals, evecs = torch.linalg.eigh(cov)
    scale = (evals.clamp_min(0) + eps).rsqrt()
    return mean.cpu(), (evecs * scale) @ evecs.T


def fit_standardize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float64 mean and (population) std ``(C,)`` of ``x`` ``(N, C, H, W)``."""
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    mean = per_channel.mean(dim=1)
    std = (per_channel - mean[:, None]).pow(2).mean(dim=1).sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def cache_key(method: str, dataset: str, train_indices: torch.Tensor, train_x: torch.Tensor,
              eps: float = ZCA_EPS) -> str:
    """Hex digest of everything a fit depends on."""
    digest = hashlib.sha256()
    digest.update(f"v{_FORMAT_VERSION}|{method}|{dataset}|{eps!r}|{tuple(train_x.shape)}".encode())
    digest.update(train_indices.to("cpu", torch.int64).contiguous().numpy())
    digest.update(train_x.detach().cpu().contiguous().numpy())
    return digest.hexdigest()[:24]


def fit_preprocessor(method: str, train_x: torch.Tensor, *, dataset: str,
                     train_indices: torch.Tensor, cache_dir: str | Path | None,
                     eps: float = ZCA_EPS) -> Preprocessor:
    """Fit ``method`` on ``train_x`` ``(N, C, H, W)`` in [0, 1], or load the cached fit
    from ``cache_dir`` (``None``: no cache)."""
    if method == "none":
        return Preprocessor("none")
    if method not in ("zca", "standardize"):
        raise ValueError(f"preprocess={method!r} is not one of ['zca', 'standardize', 'none']")
    path = None
    if cache_dir is not None:
        key = cache_key(method, dataset, train_indices, train_x, eps)
        path = Path(cache_dir) / f"{method}-{key}.pt"
        cached = _load(path, method)
        if cached is not None:
            return cached
    if method == "zca":
        mean, transform = fit_zca(train_x, eps, per_image=contrast_normalize)
    else:
        mean, transform = fit_standardize(train_x)
    fitted = Preprocessor(method, mean, transform)
    if path is not None:
        _store(path, fitted)
    return fitted


def _apply_zca(x: torch.Tensor, mean: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    device = _compute_device()
    mean, whitening = mean.to(device), whitening.to(device)
    flat = x.reshape(len(x), -1)
    out = torch.empty(flat.shape, dtype=torch.float32)
    for start in range(0, len(flat), _CHUNK):
        chunk = contrast_normalize(flat[start:start + _CHUNK].to(device, torch.float64))
        out[start:start + _CHUNK] = ((chunk - mean) @ whitening).float().cpu()
    return out.reshape(x.shape)


def _compute_device() -> str:
    """Where the float64 (N x 3072) @ (3072 x 3072) products run: a GPU if there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(path: Path, method: str) -> Preprocessor | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("version") != _FORMAT_VERSION or state.get("method") != method:
            return None
        return Preprocessor(method, state["mean"], state["transform"], from_cache=True)
    except Exception as err:  # a corrupt cache is refitted, never fatal
        warnings.warn(f"ignoring unreadable preprocessing cache {path}: {err}")
        return None


def _store(path: Path, fitted: Preprocessor) -> None:
    try:
        save_torch(path, fitted.state())
    except OSError as err:  # e.g. a read-only data folder: keep going without a cache
        warnings.warn(f"could not write preprocessing cache {path}: {err}")
