"""Preprocessing fitted on the training images ``(N, C, H, W)`` in [0, 1], cached on disk.

``zca`` (the reference code's): per-image contrast normalisation, then ZCA whitening, shrunk on
small subsets (:func:`fit_zca`). ``standardize``: per-channel mean and std. ``none``: the images
as given. A fit is cached as ``<cache_dir>/<method>-<key>.pt`` (atomic write; ZCA in float32),
``key`` hashing every input, so a changed input never reuses a stale fit; the ``CACHE_MAX_FITS``
most recently used fits of each method are kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from gcnn.validation import check_choice
from repro.io import save_torch

PREPROCESS_NAMES = ("zca", "standardize", "none")
ZCA_EPS = 1e-5  # reference code: added to the eigenvalues of the covariance
ZCA_MAX_HELD_OUT_RATIO = 1.2  # leave-one-out held-out RMS / train RMS (issue's bar: 1.5)
CACHE_MAX_FITS = 8  # most recently used fits kept per method in a cache folder
_SCORED_IMAGES = 4096  # training images scored by the leave-one-out estimate
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
        device = _compute_device()
        mean, whitening = self.mean.to(device), self.transform.to(device, torch.float64)
        out = torch.empty(x.shape, dtype=torch.float32)
        for src, dst in zip(x.reshape(len(x), -1).split(_CHUNK), out.view(len(x), -1).split(_CHUNK)):
            dst.copy_((contrast_normalize(src.to(device, torch.float64)) - mean) @ whitening)
        return out


def contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Per-image: subtract the mean over ``(C, H, W)``, divide by the (population)
    std; a constant image (std < 1e-8) becomes all zeros. Shape and dtype kept."""
    flat = x.reshape(len(x), -1).double()
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()
    return torch.where(std > 1e-8, centred / std, 0.0).to(x.dtype).reshape(x.shape)


def fit_zca(x: torch.Tensor, per_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
            max_ratio: float = ZCA_MAX_HELD_OUT_RATIO) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(mean (D,), whitening (D, D), alpha)`` in float64: ZCA ``x -> (x - mu) W`` of ``x`` ``(N, C, H, W)``
    after ``per_image`` (e.g. :func:`contrast_normalize`). ``W = U diag(1 / sqrt(lambda' + eps)) U^T`` from
    the covariance ``U diag(lambda) U^T``, shrunk as ``lambda' = (1 - alpha) lambda + alpha mean(lambda)``
    with ``alpha`` from :func:`zca_shrinkage` (0, the reference fit, where that already holds; README,
    "ZCA on a subset"). Two passes (mean, then centred covariance) in float64 chunks, on a GPU if any."""
    flat = x.reshape(len(x), -1)
    device = _compute_device()

    def prepared(rows: torch.Tensor) -> torch.Tensor:
        rows = rows.to(device, torch.float64)
        return rows if per_image is None else per_image(rows)

    mean = sum(prepared(chunk).sum(dim=0) for chunk in flat.split(_CHUNK)) / len(flat)
    cov = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64, device=device)
    for chunk in flat.split(_CHUNK):
        centred = prepared(chunk) - mean
        cov += centred.T @ centred
    evals, evecs = torch.linalg.eigh((cov / len(flat)).cpu())
    evals = evals.clamp_min(0)
    scored = flat[torch.linspace(0, len(flat) - 1, min(len(flat), _SCORED_IMAGES)).long()]
    projections = (prepared(scored) - mean) @ evecs.to(device)
    alpha = zca_shrinkage(evals, projections.pow(2).cpu(), len(flat), max_ratio)
    target = float(evals.mean()) if float(evals.mean()) > 0 else 1.0
    scale = ((1 - alpha) * evals + alpha * target + ZCA_EPS).rsqrt()
    return mean.cpu(), (evecs * scale) @ evecs.T, alpha


def zca_shrinkage(evals: torch.Tensor, squared_projections: torch.Tensor, n: int,
                  max_ratio: float = ZCA_MAX_HELD_OUT_RATIO) -> float:
    """The smallest ``alpha`` in [0, 1] (by bisection) whose ZCA keeps the leave-one-out held-out
    whitened RMS within ``max_ratio`` of the training RMS. ``evals`` ``(D,)``: eigenvalues of the
    covariance of ``n`` training images; ``squared_projections`` ``(M, D)``: squared coordinates,
    in its eigenbasis, of ``M`` centred training images to score."""
    target = float(evals.mean())
    if n < 2 or target <= 0:  # no spread to estimate: scale only
        return 1.0

    def squared_ratio(alpha: float) -> float:
        train = (evals / ((1 - alpha) * evals + alpha * target + ZCA_EPS)).sum()
        # image m left out: Sigma_-m = A - k x_m x_m^T, A diagonal in the eigenbasis
        without_one = (1 - alpha) * n / (n - 1) * evals + alpha * target + ZCA_EPS
        quad = (squared_projections / without_one).sum(dim=1)
        shrink = (1 - alpha) / (n - 1)
        held_out = quad / (1 - shrink * quad).clamp_min(1e-12)  # Sherman-Morrison
        return float(held_out.mean() / train)

    bound = max_ratio ** 2
    if squared_ratio(0.0) <= bound:
        return 0.0
    low, high = 0.0, 1.0  # invariant: high passes (alpha = 1 gives ratio 1)
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (low, middle) if squared_ratio(middle) <= bound else (middle, high)
    return high


def fit_standardize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float64 mean and (population) std ``(C,)`` of ``x`` ``(N, C, H, W)``."""
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    mean = per_channel.mean(dim=1)
    std = (per_channel - mean[:, None]).pow(2).mean(dim=1).sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def fit_preprocessor(method: str, train_x: torch.Tensor, *, dataset: str,
                     train_indices: torch.Tensor, cache_dir: str | Path | None) -> Preprocessor:
    """Fit ``method`` on ``train_x`` ``(N, C, H, W)`` in [0, 1], or load the cached fit from
    ``cache_dir`` (``None``: no cache), keyed by ``dataset``, ``train_indices`` and the images."""
    check_choice("data.preprocess", method, PREPROCESS_NAMES)
    if method == "none":
        return Preprocessor("none")
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(f"v{_FORMAT_VERSION}|{method}|{dataset}|{ZCA_EPS!r}|loo-ratio"
                                f"{ZCA_MAX_HELD_OUT_RATIO!r}|{tuple(train_x.shape)}".encode())
        digest.update(train_indices.to("cpu", torch.int64).contiguous().numpy())
        digest.update(train_x.detach().cpu().contiguous().numpy())
        path = Path(cache_dir) / f"{method}-{digest.hexdigest()[:24]}.pt"
        cached = _load(path, method)
        if cached is not None:
            return cached
    if method == "zca":
        mean, whitening, alpha = fit_zca(train_x, per_image=contrast_normalize)
        fitted = Preprocessor(method, mean, whitening.float(), alpha)
    else:
        fitted = Preprocessor(method, *fit_standardize(train_x))
    if path is not None:
        _store(path, fitted)
    return fitted


def _compute_device() -> str:
    """Where the float64 (N x 3072) @ (3072 x 3072) products run: a GPU if there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(path: Path, method: str) -> Preprocessor | None:
    """The fit cached at ``path``, marked as just used (its mtime orders eviction), or ``None``."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        fitted = Preprocessor(method, state["mean"], state["transform"], state["shrinkage"], from_cache=True)
    except Exception as err:  # a corrupt cache is refitted, never fatal
        warnings.warn(f"ignoring unreadable preprocessing cache {path}: {err}")
        return None
    with contextlib.suppress(OSError):  # a read-only data folder: eviction goes by write time
        os.utime(path)
    return fitted


def _store(path: Path, fitted: Preprocessor) -> None:
    """Write ``fitted`` to ``path`` and delete all but the ``CACHE_MAX_FITS`` most recently used
    fits of its method in that folder."""
    try:
        save_torch(path, {"mean": fitted.mean, "transform": fitted.transform, "shrinkage": fitted.shrinkage})
    except OSError as err:  # e.g. a read-only data folder: keep going without a cache
        warnings.warn(f"could not write preprocessing cache {path}: {err}")
        return
    others = []
    for other in path.parent.glob(f"{fitted.method}-*.pt"):
        with contextlib.suppress(OSError):  # deleted meanwhile by another process
            if other != path:
                others.append((other.stat().st_mtime_ns, other))
    for _, old in sorted(others, reverse=True)[CACHE_MAX_FITS - 1:]:
        try:
            old.unlink(missing_ok=True)
        except OSError as err:
            warnings.warn(f"could not delete old preprocessing cache {old}: {err}")
