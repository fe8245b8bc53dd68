"""Preprocessing fitted on the training images, cached on disk.

* ``zca`` (the paper's reference code): per-image contrast normalisation
  (subtract the image's mean over all its pixels and channels, divide by its
  standard deviation) followed by ZCA whitening ``x -> (x - mu) W`` with
  ``W = U diag(1 / sqrt(lambda' + eps)) U^T`` from the eigendecomposition
  ``S = U diag(lambda) U^T`` of the training covariance (float64,
  ``eps = 1e-5`` as in the reference code) and
  ``lambda' = (1 - alpha) lambda + alpha mean(lambda)``: the covariance shrunk
  towards a multiple of the identity with the same trace.
* ``standardize``: subtract the per-channel mean, divide by the per-channel std
  of the training images.
* ``none``: the images as given, in [0, 1].

The shrinkage ``alpha``. With fewer training images ``N`` than dimensions
``D = C*H*W`` (3072 for CIFAR), ``S`` has ``D - N + 1`` zero eigenvalues, and
the reference fit divides every test-image component in those directions by
``sqrt(1e-5)``: on CIFAR, train-input RMS 0.26 against test-input RMS 62 at
200 images. ``alpha`` is chosen from the training images alone, for the quantity
that goes wrong: the smallest ``alpha`` for which the leave-one-out estimate
of the held-out whitened RMS is at most ``ZCA_MAX_HELD_OUT_RATIO`` (1.2) times
the training RMS. Leaving out image ``n`` changes ``S`` by a rank-one term, so
``||W_{-n} x_n||^2 = x_n^T Sigma_{-n}^{-1} x_n`` has a closed form
(Sherman-Morrison) in the eigenbasis of ``S``: one eigendecomposition serves
every ``alpha`` (bisection; at most 4096 evenly spaced images are scored).
When the reference fit already passes (``alpha = 0``, e.g. the full 50k or the
40k split of CIFAR, ``N > 10 D``), the result is exactly the reference ZCA.
Why not Ledoit-Wolf: its ``alpha`` minimises the Frobenius error of the
covariance, which is dominated by the large eigenvalues, while whitening
divides by the small ones; on CIFAR-like images (1/f^2.2 spectrum, uint8) it
leaves test RMS 1.8-3.4x the training RMS at ``N/D`` = 0.07-0.33.

Images are ``(N, C, H, W)`` float tensors in [0, 1]. A fit is stored under
``<cache_dir>/<method>-<key>.pt`` (atomic write) where ``key`` hashes its
inputs: method, regulariser, data set name, training-subset indices and the
training images themselves, so a changed input never reuses a stale fit. ZCA
matrices are stored (and always applied) in float32: 38 MB per fit for CIFAR.
The cache keeps the ``CACHE_MAX_FITS`` most recently used fits per method
(8: at most ~300 MB of ZCA fits for CIFAR) and deletes older ones.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from gcnn.validation import check_choice
from repro.io import save_torch

__all__ = ["Preprocessor", "ZcaFit", "fit_preprocessor", "contrast_normalize", "fit_zca",
           "zca_shrinkage", "fit_standardize", "cache_key", "ZCA_EPS", "ZCA_MAX_HELD_OUT_RATIO",
           "CACHE_MAX_FITS"]

ZCA_EPS = 1e-5  # reference code: added to the eigenvalues of the covariance
ZCA_MAX_HELD_OUT_RATIO = 1.2  # leave-one-out held-out RMS / train RMS (issue's bar: 1.5)
CACHE_MAX_FITS = 8  # most recently used fits kept per method in a cache folder
_SCORED_IMAGES = 4096  # training images scored by the leave-one-out estimate
_BISECTION_STEPS = 30
_CHUNK = 4096   # images per float64 chunk (bounds memory on 50k x 3072 CIFAR)
_FORMAT_VERSION = 2


@dataclass
class Preprocessor:
    """A fitted preprocessing; ``apply`` maps ``(N, C, H, W)`` to float32 of the same shape."""

    method: str
    mean: torch.Tensor | None = None       # zca: (D,), standardize: (C,)
    transform: torch.Tensor | None = None  # zca: whitening float32 (D, D), standardize: std (C,)
    shrinkage: float | None = None         # zca: the alpha of the fit
    from_cache: bool = False

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "none":
            return x.float()
        if self.method == "standardize":
            shape = (1, -1, 1, 1)
            return ((x.double() - self.mean.view(shape)) / self.transform.view(shape)).float()
        return _apply_zca(x, self.mean, self.transform)

    def state(self) -> dict[str, Any]:
        return {"version": _FORMAT_VERSION, "method": self.method, "mean": self.mean,
                "transform": self.transform, "shrinkage": self.shrinkage}


def contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Per-image: subtract the mean over ``(C, H, W)``, divide by the (population)
    std; a constant image (std < 1e-8) becomes all zeros. Shape and dtype kept."""
    flat = x.reshape(len(x), -1).double()
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    centred = torch.where(std > 1e-8, centred, torch.zeros_like(centred))
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return (centred / std).to(x.dtype).reshape(x.shape)


class ZcaFit(NamedTuple):
    """A ZCA fit: float64 ``mean`` ``(D,)``, ``whitening`` ``(D, D)`` and the shrinkage used."""

    mean: torch.Tensor
    whitening: torch.Tensor
    shrinkage: float


def fit_zca(x: torch.Tensor, eps: float = ZCA_EPS,
            per_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
            max_ratio: float = ZCA_MAX_HELD_OUT_RATIO) -> ZcaFit:
    """ZCA of ``x`` ``(N, C, H, W)``, after ``per_image`` (e.g. :func:`contrast_normalize`)
    if given, with the covariance shrunk by :func:`zca_shrinkage` (``max_ratio``).
    Works in float64 chunks (on a GPU if there is one)."""
    flat = x.reshape(len(x), -1)
    prepare = per_image or (lambda chunk: chunk)
    device = _compute_device()
    mean, cov = _mean_and_covariance(flat, prepare, device)
    evals, evecs = torch.linalg.eigh(cov.cpu())
    evals = evals.clamp_min(0)
    scored = flat[torch.linspace(0, len(flat) - 1, min(len(flat), _SCORED_IMAGES)).long()]
    projections = (prepare(scored.to(device, torch.float64)) - mean) @ evecs.to(device)
    alpha = zca_shrinkage(evals, projections.pow(2).cpu(), len(flat), eps, max_ratio)
    target = float(evals.mean()) if float(evals.mean()) > 0 else 1.0
    scale = ((1 - alpha) * evals + alpha * target + eps).rsqrt()
    return ZcaFit(mean.cpu(), (evecs * scale) @ evecs.T, alpha)


def _mean_and_covariance(flat: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor],
                         device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 mean ``(D,)`` and (population) covariance ``(D, D)`` of ``prepare(flat)``,
    computed in chunks on ``device``."""
    mean = torch.zeros(flat.shape[1], dtype=torch.float64, device=device)
    for chunk in flat.split(_CHUNK):
        mean += prepare(chunk.to(device, torch.float64)).sum(dim=0)
    mean /= len(flat)
    cov = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64, device=device)
    for chunk in flat.split(_CHUNK):
        centred = prepare(chunk.to(device, torch.float64)) - mean
        cov += centred.T @ centred
    return mean, cov / len(flat)


def zca_shrinkage(evals: torch.Tensor, squared_projections: torch.Tensor, n: int,
                  eps: float = ZCA_EPS, max_ratio: float = ZCA_MAX_HELD_OUT_RATIO) -> float:
    """The smallest ``alpha`` in [0, 1] whose ZCA keeps the leave-one-out held-out
    whitened RMS within ``max_ratio`` of the training RMS (0 when the unshrunk fit
    does). ``evals`` ``(D,)``: eigenvalues of the training covariance of ``n`` images;
    ``squared_projections`` ``(M, D)``: squared coordinates, in its eigenbasis, of ``M``
    centred training images to score."""
    target = float(evals.mean())
    if n < 2 or target <= 0:  # no spread to estimate: scale only
        return 1.0

    def squared_ratio(alpha: float) -> float:
        train = (evals / ((1 - alpha) * evals + alpha * target + eps)).sum()
        # image m left out: Sigma_-m = A - k x_m x_m^T, A diagonal in the eigenbasis
        without_one = (1 - alpha) * n / (n - 1) * evals + alpha * target + eps
        quad = (squared_projections / without_one).sum(dim=1)
        shrink = (1 - alpha) / (n - 1)
        held_out = quad / (1 - shrink * quad).clamp_min(1e-12)  # Sherman-Morrison
        return float(held_out.mean() / train)

    bound = max_ratio ** 2
    if squared_ratio(0.0) <= bound:
        return 0.0
    low, high = 0.0, 1.0  # invariant: high passes (alpha = 1 gives ratio 1)
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if squared_ratio(middle) <= bound else (middle, high)
    return high


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
    regulariser = f"{eps!r}|loo-ratio{ZCA_MAX_HELD_OUT_RATIO!r}"
    digest.update(f"v{_FORMAT_VERSION}|{method}|{dataset}|{regulariser}|"
                  f"{tuple(train_x.shape)}".encode())
    digest.update(train_indices.to("cpu", torch.int64).contiguous().numpy())
    digest.update(train_x.detach().cpu().contiguous().numpy())
    return digest.hexdigest()[:24]


def fit_preprocessor(method: str, train_x: torch.Tensor, *, dataset: str,
                     train_indices: torch.Tensor, cache_dir: str | Path | None,
                     eps: float = ZCA_EPS) -> Preprocessor:
    """Fit ``method`` on ``train_x`` ``(N, C, H, W)`` in [0, 1], or load the cached fit
    from ``cache_dir`` (``None``: no cache)."""
    check_choice("data.preprocess", method, ["zca", "standardize", "none"])
    if method == "none":
        return Preprocessor("none")
    path = None
    if cache_dir is not None:
        key = cache_key(method, dataset, train_indices, train_x, eps)
        path = Path(cache_dir) / f"{method}-{key}.pt"
        cached = _load(path, method)
        if cached is not None:
            return cached
    if method == "zca":
        zca = fit_zca(train_x, eps, per_image=contrast_normalize)
        fitted = Preprocessor(method, zca.mean, zca.whitening.float(), zca.shrinkage)
    else:
        fitted = Preprocessor(method, *fit_standardize(train_x))
    if path is not None:
        _store(path, fitted)
    return fitted


def _apply_zca(x: torch.Tensor, mean: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    device = _compute_device()
    mean, whitening = mean.to(device), whitening.to(device, torch.float64)
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
        fitted = Preprocessor(method, state["mean"], state["transform"], state["shrinkage"],
                              from_cache=True)
    except Exception as err:  # a corrupt cache is refitted, never fatal
        warnings.warn(f"ignoring unreadable preprocessing cache {path}: {err}")
        return None
    _touch(path)
    return fitted


def _store(path: Path, fitted: Preprocessor) -> None:
    try:
        save_torch(path, fitted.state())
    except OSError as err:  # e.g. a read-only data folder: keep going without a cache
        warnings.warn(f"could not write preprocessing cache {path}: {err}")
        return
    _evict_least_recently_used(path.parent, fitted.method, keep=path)


def _touch(path: Path) -> None:
    """Mark a cached fit as just used (its mtime orders the eviction)."""
    try:
        os.utime(path)
    except OSError:  # read-only data folder: the cache still works, eviction order is older
        pass


def _evict_least_recently_used(cache_dir: Path, method: str, keep: Path) -> None:
    """Delete all but the ``CACHE_MAX_FITS`` most recently used ``<method>-*.pt`` fits
    in ``cache_dir``, never ``keep`` (the fit just written)."""
    others = []
    for path in cache_dir.glob(f"{method}-*.pt"):
        try:
            if path != keep:
                others.append((path.stat().st_mtime_ns, path))
        except OSError:  # deleted meanwhile by another process
            continue
    for _, path in sorted(others, reverse=True)[CACHE_MAX_FITS - 1:]:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            warnings.warn(f"could not delete old preprocessing cache {path}: {err}")
