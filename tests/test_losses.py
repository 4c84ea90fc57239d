"""Loss weights against hand-computed values; the exact Gaussian-mixture denoiser minimises the losses."""

from __future__ import annotations

import math

import pytest
import torch

from rill.core.mixture import GaussianMixture
from rill.core.parametrisations import EDMPrecond, edm_loss, edm_weight, min_snr_weight, vp_loss
from rill.core.schedules import VPSchedule

torch.set_num_threads(1)


def test_edm_weight_hand_values_and_precond_agree():
    sigma = torch.tensor([1.0, 0.5, 2.0])
    # (σ² + σd²) / (σ·σd)² with σd = 0.5: (1 + .25)/.25 = 5, (.25 + .25)/.0625 = 8, (4 + .25)/1 = 4.25
    expected = torch.tensor([5.0, 8.0, 4.25])
    assert torch.allclose(edm_weight(sigma, 0.5), expected)
    assert torch.allclose(EDMPrecond(torch.nn.Identity(), 0.5).loss_weight(sigma), expected)
    # λ = 1 / c_out²
    c_out = EDMPrecond(torch.nn.Identity(), 0.5).coefficients(sigma)[1]
    assert torch.allclose(edm_weight(sigma, 0.5), 1 / c_out**2)


def test_edm_loss_hand_computed():
    x0 = torch.tensor([[1.0, -1.0], [0.5, 0.5]])
    sigma, noise = torch.tensor([1.0, 0.5]), torch.ones(2, 2)
    seen = {}

    def zero_denoiser(x, s, cond):
        seen["x"], seen["sigma"] = x, s
        return torch.zeros_like(x)

    loss = edm_loss(zero_denoiser, x0, sigma=sigma, noise=noise, sigma_data=0.5)
    assert torch.allclose(seen["x"], x0 + torch.tensor([[1.0], [0.5]]))  # y + σ·n
    # λ · mean(x0²): 5 · 1 = 5 and 8 · 0.25 = 2
    assert torch.allclose(loss, torch.tensor([5.0, 2.0]))
    perfect = edm_loss(lambda x, s, c: x0, x0, sigma=sigma, noise=noise)
    assert torch.equal(perfect, torch.zeros(2))


def test_min_snr_weight_hand_values():
    snr = torch.tensor([0.5, 5.0, 20.0])
    assert torch.allclose(min_snr_weight(snr, 5.0, "epsilon"), torch.tensor([1.0, 1.0, 0.25]))
    assert torch.allclose(min_snr_weight(snr, 5.0, "v"), torch.tensor([0.5 / 1.5, 5 / 6, 5 / 21]))
    assert torch.equal(min_snr_weight(snr, None, "v"), torch.ones(3))
    assert torch.allclose(min_snr_weight(snr, 5.0, "x0"), torch.tensor([0.5, 5.0, 5.0]))  # min(SNR, γ)
    with pytest.raises(ValueError, match="prediction type 'sample'"):  # one name per type: "x0"
        min_snr_weight(snr, 5.0, "sample")


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_vp_loss_hand_computed(prediction):
    sched = VPSchedule.make("linear", 1000)
    x0 = torch.tensor([[0.5, -0.5], [1.0, 0.0]], dtype=torch.float64)
    noise = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    t = torch.tensor([10, 900])
    seen = {}

    def zero_net(x_t, tt, cond):
        seen["x_t"], seen["t"] = x_t, tt
        return torch.zeros_like(x_t)

    loss = vp_loss(zero_net, sched, x0, prediction=prediction, min_snr_gamma=5.0, t=t, noise=noise)
    ac = sched.alphas_cumprod[t]
    a, s = ac.sqrt()[:, None], (1 - ac).sqrt()[:, None]
    assert torch.allclose(seen["x_t"], a * x0 + s * noise)
    assert torch.equal(seen["t"], t.double())
    target = noise if prediction == "epsilon" else a * noise - s * x0
    snr = ac / (1 - ac)
    w = snr.clamp(max=5.0) / (snr if prediction == "epsilon" else snr + 1)
    assert torch.allclose(loss, (w * (target**2).mean(1)).float(), rtol=1e-6)
    assert snr[0] > 5 > snr[1]  # one sample clipped by γ, one not: both branches of min(SNR, γ) checked


def _mixture() -> GaussianMixture:
    return GaussianMixture(
        torch.tensor([[-1.0, 0.5], [1.0, -0.5], [0.0, 1.5]]),
        torch.tensor([[0.2], [0.3], [0.15]]),
        torch.tensor([0.3, 0.5, 0.2]),
    )


def test_exact_mixture_denoiser_minimises_edm_loss():
    gm = _mixture()
    g = torch.Generator().manual_seed(0)
    x0 = gm.sample(20000, generator=g)
    sigma = (-1.2 + 1.2 * torch.randn(20000, generator=g, dtype=torch.float64)).exp()
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = edm_loss(gm.denoise, x0, sigma=sigma, noise=noise).mean()
    perturbed = {
        "scaled": lambda x, s, c: 1.05 * gm.denoise(x, s),
        "shifted": lambda x, s, c: gm.denoise(x, s) + 0.03,
        "wrong sigma": lambda x, s, c: gm.denoise(x, 1.2 * s),
        "identity-ish": lambda x, s, c: 0.98 * gm.denoise(x, s) + 0.02 * x,
    }
    for name, d in perturbed.items():
        worse = edm_loss(d, x0, sigma=sigma, noise=noise).mean()
        assert worse > exact, f"{name}: perturbed loss {worse:.5f} not above exact {exact:.5f}"


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_exact_mixture_prediction_minimises_vp_loss(prediction):
    gm = _mixture()
    sched = VPSchedule.make("linear", 1000)
    g = torch.Generator().manual_seed(1)
    n = 20000
    x0 = gm.sample(n, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)

    def make_net(denoise):
        def net(x_t, tt, cond):  # exact ε / v prediction from the exact x0-prediction, through σ-space
            ac = sched.alphas_cumprod[tt.long()][:, None]
            a, s = ac.sqrt(), (1 - ac).sqrt()
            x0_hat = denoise(x_t / a, (s / a).flatten())
            eps = (x_t - a * x0_hat) / s
            return eps if prediction == "epsilon" else a * eps - s * x0_hat

        return net

    kw = dict(prediction=prediction, min_snr_gamma=5.0, t=t, noise=noise)
    exact = vp_loss(make_net(gm.denoise), sched, x0, **kw).mean()
    assert math.isfinite(exact)
    for scale in (0.95, 1.05):
        worse = vp_loss(make_net(lambda x, s, k=scale: k * gm.denoise(x, s)), sched, x0, **kw).mean()
        assert worse > exact, f"x0 scaled by {scale}: {worse:.5f} not above exact {exact:.5f}"
