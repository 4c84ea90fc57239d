"""rill.toy.GaussianMixture: the exact denoiser, score and density that the sampler tests rely on."""

from __future__ import annotations

import math

import pytest
import torch

from rill.core.mixture import GaussianMixture


def moments(gm: GaussianMixture, sigma: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and per-coordinate variance of p_σ, in closed form."""
    w = gm.weights[:, None]
    mean = (w * gm.means).sum(0)
    return mean, (w * (gm.stds**2 + sigma**2 + gm.means**2)).sum(0) - mean**2


@pytest.mark.parametrize("event_shape", [None, (2, 2, 3)], ids=["points", "images"])
@pytest.mark.parametrize("sigma", [0.05, 0.4, 2.0, 30.0])
def test_score_is_the_gradient_of_log_prob(event_shape, sigma):
    """Tweedie: ∇ log p_σ(x) = (D(x; σ) − x)/σ², checked by autograd through the exact log density."""
    gm = GaussianMixture.random(12, 5, seed=1, event_shape=event_shape)
    g = torch.Generator().manual_seed(0)
    x = gm.sample(6, generator=g) + sigma * torch.randn(6, *gm.event_shape, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
    torch.testing.assert_close(gm.score(x.detach(), sigma), grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close((gm(x.detach(), sigma) - x.detach()) / sigma**2, grad, rtol=1e-9, atol=1e-9)


def test_denoiser_is_the_monte_carlo_posterior_mean():
    """1-D: sample x0, add σ-noise, average x0 over the samples whose x falls in a narrow bin."""
    gm = GaussianMixture(
        torch.tensor([[-1.0], [0.5], [2.0]]),
        torch.tensor([[0.2], [0.4], [0.1]]),
        torch.tensor([0.3, 0.5, 0.2]),
    )
    g = torch.Generator().manual_seed(0)
    n, sigma, half = 400_000, 0.6, 0.01
    x0 = gm.sample(n, generator=g)
    x = x0 + sigma * torch.randn(n, 1, generator=g, dtype=torch.float64)
    for center in (-1.2, 0.0, 0.9, 2.1):
        sel = (x[:, 0] - center).abs() < half
        post = x0[sel, 0]
        se = post.std() / math.sqrt(sel.sum())
        d = gm(torch.tensor([[center - half], [center], [center + half]], dtype=torch.float64), sigma)[:, 0]
        spread = (d - d[1]).abs().max().item()  # how much D itself moves across the bin
        # 4 Monte-Carlo standard errors plus the variation of D over the bin
        assert abs(post.mean().item() - d[1].item()) < 4 * se + spread, (
            center,
            post.mean().item(),
            d[1].item(),
        )


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_log_prob_integrates_to_one_in_1d(sigma):
    gm = GaussianMixture(
        torch.tensor([[-1.0], [0.5], [2.0]]),
        torch.tensor([[0.2], [0.4], [0.1]]),
        torch.tensor([1.0, 2.0, 1.0]),
    )  # weights are normalized
    grid = torch.linspace(-6.0, 7.0, 40_001, dtype=torch.float64)
    dens = gm.log_prob(grid[:, None], sigma).exp()
    assert torch.trapezoid(dens, grid).item() == pytest.approx(1.0, abs=1e-8)
    mean, var = moments(gm, sigma)
    assert torch.trapezoid(dens * grid, grid).item() == pytest.approx(mean.item(), abs=1e-8)
    assert torch.trapezoid(dens * (grid - mean) ** 2, grid).item() == pytest.approx(var.item(), abs=1e-7)


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_samples_have_the_right_moments(sigma):
    gm = GaussianMixture.random(3, 4, seed=4, scale=2.0)
    n = 50_000
    s = gm.sample(n, generator=torch.Generator().manual_seed(1), sigma=sigma)
    mean, var = moments(gm, sigma)
    assert s.shape == (n, 3) and s.dtype == torch.float64
    assert ((s.mean(0) - mean).abs() < 4 * (var / n).sqrt()).all()
    c = s - s.mean(0)
    se_var = (((c**4).mean(0) - c.var(0) ** 2) / n).sqrt()
    assert ((s.var(0) - var).abs() < 4 * se_var).all()


def test_denoiser_limits_and_dtype():
    gm = GaussianMixture.random(4, 3, seed=6)
    x = torch.randn(5, 4)
    out = gm(x, 1.0)
    assert out.dtype == torch.float32 and out.shape == x.shape
    # σ → 0: D(x) → x near the data; σ → ∞: D → the data mean
    near = gm.sample(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gm(near, 1e-6), near, rtol=0, atol=1e-9)
    torch.testing.assert_close(gm(x.double() * 1e3, 1e6), moments(gm)[0].expand(5, 4), rtol=0, atol=1e-6)


def test_random_is_reproducible_and_validates():
    a, b = GaussianMixture.random(3, 4, seed=9), GaussianMixture.random(3, 4, seed=9)
    assert torch.equal(a.means, b.means) and torch.equal(a.stds, b.stds) and torch.equal(a.weights, b.weights)
    with pytest.raises(ValueError, match="weights must be 2 non-negative numbers"):
        GaussianMixture(torch.zeros(2, 1), torch.ones(2, 1), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="stds must be non-negative"):
        GaussianMixture(torch.zeros(2, 1), -torch.ones(2, 1), torch.ones(2))
    with pytest.raises(ValueError, match=r"event_shape \(2, 2\) does not hold 3 values"):
        GaussianMixture(torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2), event_shape=(2, 2))
    with pytest.raises(ValueError, match=r"expected samples of shape \(B, 3\), got \(2, 4\)"):
        a(torch.zeros(2, 4), 1.0)
