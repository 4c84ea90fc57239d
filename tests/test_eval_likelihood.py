"""NLL through the probability-flow ODE against the exact log-density of a Gaussian mixture."""

from __future__ import annotations

import math

import pytest
import torch

from rill.core.mixture import GaussianMixture
from rill.eval import bits_per_dim, log_likelihood

torch.set_num_threads(1)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def _mixture(dim: int) -> GaussianMixture:
    # narrow components: log p_σmin is far from 0, so a relative error is meaningful
    return GaussianMixture.random(dim, 4, std_range=(0.03, 0.1), seed=3)


def test_exact_trace_matches_mixture_density_d2():
    gm = _mixture(2)
    x = gm.sample(16, generator=torch.Generator().manual_seed(0), sigma=SIGMA_MIN)
    exact = gm.log_prob(x, SIGMA_MIN)  # like with like: the ODE gives log p_σmin, not log p_0
    est = log_likelihood(
        gm,
        x,
        trace="exact",
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        rtol=1e-6,
        atol=1e-6,
        log_prior=lambda y: gm.log_prob(y, SIGMA_MAX),
    )
    rel = ((est - exact).abs() / exact.abs()).max().item()
    assert rel < 0.01, f"max relative error {rel:.4f}"
    # the default N(0, σ_max² I) prior costs only ~|E x0| / σ_max nats
    approx = log_likelihood(gm, x, trace="exact", rtol=1e-6, atol=1e-6)
    assert (approx - exact).abs().max().item() < 0.05


def test_hutchinson_matches_mixture_density_d16():
    gm = _mixture(16)
    g = torch.Generator().manual_seed(1)
    x = gm.sample(48, generator=g, sigma=SIGMA_MIN)
    exact = gm.log_prob(x, SIGMA_MIN)
    est = log_likelihood(
        gm,
        x,
        trace="hutchinson",
        probes=16,
        noise="rademacher",
        generator=g,
        rtol=1e-6,
        atol=1e-6,
        log_prior=lambda y: gm.log_prob(y, SIGMA_MAX),
    )
    # Hutchinson is unbiased per sample; the reported number is the mean over the data
    rel = abs(est.mean().item() - exact.mean().item()) / abs(exact.mean().item())
    assert rel < 0.01, f"relative error of the mean log-likelihood {rel:.4f}"


def test_heun_converges_to_the_same_answer():
    gm = _mixture(2)
    x = gm.sample(8, generator=torch.Generator().manual_seed(2), sigma=SIGMA_MIN)
    exact = gm.log_prob(x, SIGMA_MIN)
    prior = lambda y: gm.log_prob(y, SIGMA_MAX)  # noqa: E731
    coarse = log_likelihood(gm, x, method="heun", steps=50, trace="exact", log_prior=prior)
    fine = log_likelihood(gm, x, method="heun", steps=400, trace="exact", log_prior=prior)
    assert (fine - exact).abs().max() < (coarse - exact).abs().max()
    assert ((fine - exact).abs() / exact.abs()).max().item() < 0.01


def test_bits_per_dim_convention():
    # a point mass at the origin blurred by σ_min: D(x) = 0, so log p_σmin(x) = log N(x; 0, σ_min² I) exactly;
    # bits/dim = (−log p / d + log((L − 1)/2)) / ln 2
    zero = lambda x, sigma, cond=None: torch.zeros_like(x)  # noqa: E731
    images = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    out = bits_per_dim(zero, images, levels=256, generator=g, rtol=1e-8, atol=1e-8, trace="exact")
    x = (
        images
        + (torch.rand(images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5)
        / 127.5
    )
    logp = (-0.5 * (x / SIGMA_MIN) ** 2 - math.log(SIGMA_MIN) - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    expected = (-logp / 4 + math.log(127.5)) / math.log(2)
    torch.testing.assert_close(out["bpd"], expected, rtol=1e-5, atol=1e-5)


def test_bad_options_name_themselves():
    gm = _mixture(2)
    x = gm.sample(2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="trace"):
        log_likelihood(gm, x, trace="exactly")
    with pytest.raises(ValueError, match="sigma_min"):
        log_likelihood(gm, x, sigma_min=1.0, sigma_max=0.5)
