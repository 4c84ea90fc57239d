"""Fréchet distance, precision / recall, diversity and saturation on sets with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rill.eval import diversity, frechet_distance, frechet_distance_from_stats, precision_recall, saturation

torch.set_num_threads(1)


def test_fd_of_identical_sets_is_zero():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fd_closed_form_for_two_gaussians():
    # d² = |μ1 − μ2|² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½; for Σ1 = diag(a²), Σ2 = diag(b²): Σ (a − b)²
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    expected = ((mu1 - mu2) ** 2).sum() + ((a - b) ** 2).sum()
    assert frechet_distance_from_stats(mu1, np.diag(a**2), mu2, np.diag(b**2)) == pytest.approx(
        expected, rel=1e-10
    )


def test_fd_non_commuting_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    from scipy.linalg import sqrtm

    ref = np.trace(s1) + np.trace(s2) - 2 * np.trace(sqrtm(s1 @ s2)).real
    assert frechet_distance_from_stats(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(ref, rel=1e-8)


def test_fd_of_samples_approaches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(20000, 2, generator=g, dtype=torch.float64) * 2 + torch.tensor(
        [3.0, 0.0], dtype=torch.float64
    )
    assert frechet_distance(x, y) == pytest.approx(9.0 + 2 * (2 - 1) ** 2, rel=0.03)


def test_fd_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(torch.randn(1, 4), torch.randn(10, 4))
    with pytest.raises(ValueError, match="feature width"):
        frechet_distance(torch.randn(10, 4), torch.randn(10, 5))


def test_precision_recall_on_constructed_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 2, generator=g)
    # fakes that cover only half of the real set (x > 0): precision high, recall about one half
    half = real[real[:, 0] > 0] + 0.01 * torch.randn(int((real[:, 0] > 0).sum()), 2, generator=g)
    p, r = precision_recall(real, half, k=3)
    assert p > 0.95
    assert 0.35 < r < 0.7
    # fakes far away from the data: precision and recall both 0
    p, r = precision_recall(real, torch.randn(300, 2, generator=g) + 50.0, k=3)
    assert p == 0.0 and r == 0.0
    # the same distribution: both high
    p, r = precision_recall(real, torch.randn(400, 2, generator=g), k=3)
    assert p > 0.85 and r > 0.85


def test_precision_recall_checks_k():
    with pytest.raises(ValueError, match="k"):
        precision_recall(torch.randn(10, 2), torch.randn(10, 2), k=0)
    with pytest.raises(ValueError, match="at least 4"):
        precision_recall(torch.randn(3, 2), torch.randn(10, 2), k=3)


def test_diversity():
    collapsed = [torch.zeros(5, 3), torch.ones(4, 3)]
    assert diversity(collapsed) == 0.0
    two = [torch.tensor([[0.0, 0.0], [3.0, 4.0]])]
    assert diversity(two) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="2 or more"):
        diversity([torch.zeros(1, 3)])


def test_saturation():
    grey = torch.zeros(2, 3, 4, 4)
    assert saturation(grey) == {"clipped": 0.0, "saturation": 0.0}
    # near-black pixels are left out of the colour saturation: a dark blue-ish background does not count
    dark = torch.full((1, 3, 4, 4), -0.9)
    dark[:, 2] = -0.8
    assert saturation(dark)["saturation"] == 0.0
    red = torch.full((1, 3, 4, 4), -1.0)
    red[:, 0] = 1.0
    s = saturation(red)
    assert s["saturation"] == pytest.approx(1.0) and s["clipped"] == pytest.approx(1.0)
    half = torch.zeros(1, 1, 2, 2)
    half[..., 0, 0] = 1.0
    assert saturation(half)["clipped"] == pytest.approx(0.25)
    assert math.isclose(saturation(half)["saturation"], 0.25)
