"""Sample-quality metrics on feature vectors: Fréchet distance, k-NN precision / recall, diversity; and
image saturation.

All take features as (N, F) tensors or arrays (any float dtype; computed in float64) and return Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..core.checks import check_positive_int

__all__ = [
    "gaussian_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "precision_recall",
    "diversity",
    "saturation",
]

ArrayLike = Tensor | np.ndarray


def _as_features(x: ArrayLike, name: str, min_count: int = 1) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach().cpu()).to(torch.float64)
    if t.ndim == 1:
        raise ValueError(f"{name} must be (N, F) feature vectors, got a 1-D array of shape {tuple(t.shape)}")
    t = t.reshape(t.shape[0], -1)
    if t.shape[0] < min_count:
        raise ValueError(f"{name} has {t.shape[0]} samples; this metric needs at least {min_count}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains {int((~torch.isfinite(t)).sum())} non-finite values (NaN or inf)")
    return t


def gaussian_stats(features: ArrayLike, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F) of (N, F) features; needs N >= 2 (one sample has no
    covariance)."""
    f = _as_features(features, name)
    if f.shape[0] < 2:
        raise ValueError(
            f"{name}: a Gaussian fit needs at least 2 samples to estimate a covariance, got N={f.shape[0]}; "
            "generate more images (Fréchet distances are biased upward for small N: use N >= 10·F if you can)"
        )
    mu = f.mean(0)
    centred = f - mu
    cov = centred.T @ centred / (f.shape[0] - 1)
    return mu.numpy(), cov.numpy()


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix by eigen-decomposition (negative rounding clipped)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_from_stats(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray
) -> float:
    """d² = |μ1 − μ2|² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½   (Fréchet 1957 / Dowson & Landau 1982; FID,
    Heusel et al. 2017, Eq. 6). The cross term uses the symmetric form, whose eigenvalues are real and ≥ 0, in
    place of sqrtm(Σ1 Σ2) (same trace, no complex rounding)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.shape[0],) * 2:
        raise ValueError(
            f"mismatched statistics: means {mu1.shape} / {mu2.shape}, covariances {cov1.shape} / "
            f"{cov2.shape}; both sets need the same feature width F (means (F,), covariances (F, F))"
        )
    s1 = _sqrtm_psd(cov1)
    cross = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    tr_covmean = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_covmean, 0.0))


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N ≥ 2 each; FID when the features are
    Inception-v3 pool features, "FD_<net>" otherwise)."""
    return frechet_distance_from_stats(
        *gaussian_stats(features_a, "first set"), *gaussian_stats(features_b, "second set")
    )


def _kth_nn_radius(x: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance from each row of x to its k-th nearest other row (the row itself excluded)."""
    out = []
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i : i + chunk], x)  # (b, N)
        # the k+1 smallest include the point itself at distance 0
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def _inside_any_ball(query: Tensor, centres: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """For each query row: is it within radii[j] of some centre j?"""
    hits = []
    for i in range(0, query.shape[0], chunk):
        d = torch.cdist(query[i : i + chunk], centres)  # (b, M)
        hits.append((d <= radii[None]).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, Eq. 1–2).

    The manifold of a set is the union of balls around its points, each with the radius of the distance to its
    k-th nearest neighbour in the set. precision = fraction of fake samples inside the real manifold;
    recall = fraction of real samples inside the fake manifold.
    """
    check_positive_int("k (nearest neighbours)", k)
    real_t = _as_features(real, "real features", min_count=k + 1)
    fake_t = _as_features(fake, "fake features", min_count=k + 1)
    if real_t.shape[1] != fake_t.shape[1]:
        raise ValueError(f"feature widths differ: real {real_t.shape[1]}, fake {fake_t.shape[1]}")
    precision = _inside_any_ball(fake_t, real_t, _kth_nn_radius(real_t, k)).double().mean().item()
    recall = _inside_any_ball(real_t, fake_t, _kth_nn_radius(fake_t, k)).double().mean().item()
    return precision, recall


def diversity(groups: Sequence[ArrayLike]) -> float:
    """Mean pairwise Euclidean feature distance within each group (e.g. the images of one prompt), averaged
    over the groups with at least 2 members. Collapsed generations (one image per prompt repeated) score 0."""
    scores = []
    for g in groups:
        f = _as_features(g, "group")
        n = f.shape[0]
        if n < 2:
            continue
        d = torch.cdist(f, f)
        scores.append(d.sum().item() / (n * (n - 1)))
    if not scores:
        raise ValueError(
            "diversity needs at least one group with 2 or more samples (generate n >= 2 per prompt)"
        )
    return float(np.mean(scores))


def saturation(images: Tensor, clip_tol: float = 1e-3, dark: float = 0.25) -> dict[str, float]:
    """How saturated images in [-1, 1] are.

    clipped: fraction of pixel values at the range ends (|x| >= 1 − clip_tol): what the final clamp cut.
    saturation: colour images: mean HSV saturation (max − min) / max over the RGB channels of the pixels whose
        value (max channel, in [0, 1]) exceeds `dark` (near-black pixels have an unstable hue and saturation);
        single-channel images: mean |x|. Both in [0, 1]; higher guidance pushes them up (oversaturation).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    x = images.detach().float().cpu()
    clipped = (x.abs() >= 1 - clip_tol).float().mean().item()
    if x.shape[1] == 3:
        rgb = ((x + 1) / 2).clamp(0, 1)
        hi, lo = rgb.max(1).values, rgb.min(1).values
        lit = hi > dark
        sat = ((hi - lo) / hi.clamp(min=1e-6))[lit].mean().item() if lit.any() else 0.0
    else:
        sat = x.abs().clamp(max=1).mean().item()
    return {"clipped": clipped, "saturation": sat}
