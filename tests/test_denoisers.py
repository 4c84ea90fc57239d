"""rill.denoisers: EDM preconditioning, the ε / v / x0 adapters (exact through the mixture), guidance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rill.core.denoiser import score
from rill.core.guidance import CFGDenoiser
from rill.core.mixture import GaussianMixture
from rill.core.parametrisations import EDMPrecond, VPAdapter
from rill.core.schedules import VPSchedule


class Recorder(nn.Module):
    """A backbone that records its inputs and returns `fn(x_in, c_noise)`."""

    def __init__(self, fn=lambda x, c: torch.zeros_like(x)):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))  # so EDMPrecond can read the parameter dtype
        self.fn, self.seen = fn, []

    def forward(self, x_in, c_noise, cond=None):
        self.seen.append((x_in, c_noise))
        return self.fn(x_in, c_noise)


# --- EDM preconditioning ------------------------------------------------------------------------------------
def test_edm_coefficients_identities():
    sd = 0.5
    pre = EDMPrecond(Recorder(), sigma_data=sd)
    sigma = torch.logspace(-3, 2, 40, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = pre.coefficients(sigma)
    # EDM Table 1 / App. B.6: unit-variance input and training target, and c_skip + c_out·… splits the signal
    torch.testing.assert_close(c_in**2 * (sigma**2 + sd**2), torch.ones_like(sigma))
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_var, torch.ones_like(sigma))
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    torch.testing.assert_close(pre.loss_weight(sigma), 1 / c_out**2)
    at_sd = [c.item() for c in pre.coefficients(torch.tensor(sd, dtype=torch.float64))]
    assert at_sd == pytest.approx([0.5, sd / math.sqrt(2), 1 / (sd * math.sqrt(2)), math.log(sd) / 4])


def test_edm_forward_feeds_the_network_and_keeps_dtype():
    net = Recorder(lambda x, c: torch.ones_like(x))
    pre = EDMPrecond(net, sigma_data=0.5)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    out = pre(x, sigma)
    c_skip, c_out, c_in, c_noise = (c.reshape(3, 1, 1, 1) for c in pre.coefficients(sigma))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, c_skip * x + c_out)
    x_in, c_n = net.seen[-1]
    assert x_in.dtype == torch.float32  # the network runs in its own dtype
    torch.testing.assert_close(x_in.double(), c_in * x, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(c_n.double(), c_noise.flatten(), rtol=1e-6, atol=0)


def test_edm_with_the_ideal_network_is_the_exact_denoiser():
    gm = GaussianMixture.random(4, 3, seed=0)
    sd = 0.5
    c = lambda s: (sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt(), 1 / (s**2 + sd**2).sqrt())  # noqa: E731

    def ideal(x_in, c_noise):  # F* = (D − c_skip·x)/c_out, from the network's own inputs
        s = (4 * c_noise.double()).exp()[:, None]
        c_skip, c_out, c_in = c(s)
        x = x_in.double() / c_in
        return (gm(x, s.flatten()) - c_skip * x) / c_out

    net = Recorder(ideal).double()
    x, sigma = torch.randn(6, 4, dtype=torch.float64) * 3, torch.logspace(-2, 1.5, 6, dtype=torch.float64)
    torch.testing.assert_close(EDMPrecond(net, sd)(x, sigma), gm(x, sigma), rtol=1e-9, atol=1e-9)


# --- VP adapters --------------------------------------------------------------------------------------------
def vp_model(gm: GaussianMixture, schedule: VPSchedule, prediction: str):
    """An ε-, v- or x0-network on the discrete VP schedule, built from the exact mixture denoiser."""

    def model(x_vp, t, cond=None):
        s = schedule.t_to_sigma(t).to(x_vp.dtype)  # the σ of timestep t
        alpha = (1 / (1 + s**2).sqrt())[:, None]  # sqrt(ᾱ)
        x = x_vp / alpha
        d = gm(x, s)
        eps = (x - d) / s[:, None]
        if prediction == "epsilon":
            return eps
        if prediction == "v":  # v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0
            return alpha * eps - (1 - alpha**2).sqrt() * d
        return d

    return model


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_vp_adapter_recovers_the_exact_denoiser(prediction):
    gm = GaussianMixture.random(3, 4, seed=2)
    schedule = VPSchedule.make("scaled_linear", 1000, 0.00085, 0.012)
    adapter = VPAdapter(vp_model(gm, schedule, prediction), schedule, prediction)
    sigma = torch.tensor([0.05, 0.3, 1.0, 3.7, 14.0], dtype=torch.float64)  # between table entries too
    x = gm.sample(5, generator=torch.Generator().manual_seed(0)) + sigma[:, None] * torch.randn(5, 3).double()
    torch.testing.assert_close(adapter(x, sigma), gm(x, sigma), rtol=1e-9, atol=1e-9)


def test_vp_adapter_discrete_t_rounds_the_timestep():
    gm = GaussianMixture.random(3, 4, seed=2)
    schedule = VPSchedule.make("linear", 1000)
    seen = []
    inner = vp_model(gm, schedule, "epsilon")
    adapter = VPAdapter(
        lambda x, t, c: seen.append(t) or inner(x, t, c), schedule, "epsilon", discrete_t=True
    )
    on_table = schedule.sigmas[[10, 500]].clone()
    x = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(adapter(x, on_table), gm(x, on_table), rtol=1e-9, atol=1e-9)
    adapter(x, torch.tensor([0.2, 2.0], dtype=torch.float64))
    assert torch.equal(seen[-1], seen[-1].round())
    with pytest.raises(ValueError, match="unknown prediction type 'score'"):
        VPAdapter(inner, schedule, "score")


def test_score_is_tweedie():
    gm = GaussianMixture.random(3, 4, seed=5)
    x, s = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0.1, 0.5, 1.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(score(gm, x, s), gm.score(x, s), rtol=1e-12, atol=1e-12)


# --- classifier-free guidance -------------------------------------------------------------------------------
class Toy(nn.Module):
    """D(x; σ, c) = x / (1 + σ²) + c["pooled"]: a conditional denoiser with an obvious answer."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x, sigma, cond=None):
        self.batches.append(x.shape[0])
        return x / (1 + sigma[:, None] ** 2) + cond["pooled"]


def _inputs(b=4, d=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    cond = {"pooled": torch.randn(b, d, generator=g, dtype=torch.float64)}
    uncond = {"pooled": torch.randn(1, d, generator=g, dtype=torch.float64)}  # batch 1: broadcast
    sigma = torch.tensor([0.1, 0.5, 2.0, 10.0], dtype=torch.float64)[:b]
    return x, sigma, cond, uncond


def test_cfg_scales():
    x, sigma, cond, uncond = _inputs()
    toy = Toy()
    d_c, d_u = toy(x, sigma, cond), toy(x, sigma, {"pooled": uncond["pooled"].expand(4, 3)})
    toy.batches.clear()
    torch.testing.assert_close(CFGDenoiser(toy, uncond, scale=1.0)(x, sigma, cond), d_c)
    assert toy.batches == [4]  # scale 1: one conditional call, no doubled batch
    torch.testing.assert_close(CFGDenoiser(toy, uncond, scale=0.0)(x, sigma, cond), d_u)
    assert toy.batches[-1] == 8  # cond and uncond in one batch
    torch.testing.assert_close(CFGDenoiser(toy, uncond, scale=7.5)(x, sigma, cond), d_u + 7.5 * (d_c - d_u))


def test_cfg_interval_switches_per_sample():
    x, sigma, cond, uncond = _inputs()
    toy = Toy()
    d_c, d_u = toy(x, sigma, cond), toy(x, sigma, {"pooled": uncond["pooled"].expand(4, 3)})
    out = CFGDenoiser(toy, uncond, scale=3.0, interval=(0.3, 5.0))(x, sigma, cond)
    inside = torch.tensor([False, True, True, False])
    torch.testing.assert_close(out[inside], (d_u + 3.0 * (d_c - d_u))[inside])
    torch.testing.assert_close(out[~inside], d_c[~inside])
    toy.batches.clear()
    CFGDenoiser(toy, uncond, scale=3.0, interval=(20.0, 30.0))(x, sigma, cond)
    assert toy.batches == [4]  # no σ inside: the unconditional branch is not evaluated


def test_cfg_rescale_keeps_the_conditional_std():
    x, sigma, cond, uncond = _inputs()
    toy = Toy()
    d_c = toy(x, sigma, cond)
    guided = CFGDenoiser(toy, uncond, scale=6.0)(x, sigma, cond)
    full = CFGDenoiser(toy, uncond, scale=6.0, rescale=1.0)(x, sigma, cond)
    torch.testing.assert_close(full.std(dim=1), d_c.std(dim=1))
    half = CFGDenoiser(toy, uncond, scale=6.0, rescale=0.5)(x, sigma, cond)
    torch.testing.assert_close(half, 0.5 * full + 0.5 * guided)


def test_cfg_bad_inputs_raise():
    x, sigma, cond, uncond = _inputs()
    toy = Toy()
    with pytest.raises(ValueError, match="differ in keys"):
        CFGDenoiser(toy, {"tokens": uncond["pooled"]}, scale=2.0)(x, sigma, cond)
    with pytest.raises(ValueError, match="has batch 3; expected 1 or 4"):
        CFGDenoiser(toy, {"pooled": torch.zeros(3, 3, dtype=torch.float64)}, scale=2.0)(x, sigma, cond)
    with pytest.raises(ValueError, match="guidance scale must be finite"):
        CFGDenoiser(toy, uncond, scale=math.inf)
    with pytest.raises(ValueError, match="CFG rescale must be in"):
        CFGDenoiser(toy, uncond, rescale=1.5)
    with pytest.raises(ValueError, match="guidance interval"):
        CFGDenoiser(toy, uncond, interval=(2.0, 1.0))
