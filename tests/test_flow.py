"""Flow matching as a parametrisation: D(x; σ) = x_t − t·v is the exact denoiser when v is exact, every rill
sampler runs on it unchanged, Euler on the σ grid is Euler in t, the shift moves σ, and a small net learns."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from rill.core.grids import karras
from rill.core.mixture import GaussianMixture
from rill.core.parametrisations import FlowPrecond, ParamSettings, flow_loss, get_parametrisation
from rill.core.parametrisations.flow import sigma_to_t, t_to_sigma
from rill.model import DiffusionModel, ModelConfig
from rill.nets import build_net
from rill.samplers import INFO, SAMPLERS

MIX = GaussianMixture.random(2, 4, seed=3)


class ExactVelocity(nn.Module):
    """The "net" of a perfectly trained flow model: v = (x_t − D_exact) / t, read from the mixture."""

    def __init__(self, mixture: GaussianMixture):
        super().__init__()
        self.mixture = mixture
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # sets the net dtype

    def forward(self, x_t, c_noise, cond=None):
        sigma = (4 * c_noise.to(torch.float64)).exp()  # c_noise = ln(σ)/4
        t = sigma_to_t(sigma)[:, None]
        x = x_t.to(torch.float64) * (1 + sigma[:, None])  # back to VE coordinates
        return (x_t - self.mixture.denoise(x, sigma)) / t


FLOW = FlowPrecond(ExactVelocity(MIX))


def noise(batch: int, sigma_max: float, seed: int = 0) -> torch.Tensor:
    return (
        torch.randn(batch, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * sigma_max
    )


def test_registered_with_its_coefficients_and_time_maps():
    assert get_parametrisation("flow") is FlowPrecond
    sigma = torch.tensor([1e-3, 0.5, 1.0, 80.0], dtype=torch.float64)
    t = sigma_to_t(sigma)
    torch.testing.assert_close(t_to_sigma(t), sigma)
    c_skip, c_out, c_in, c_noise = FlowPrecond.coefficients(sigma)
    torch.testing.assert_close(c_in, 1 - t)  # x_t = (1 − t)·x_VE
    torch.testing.assert_close(c_out, -t)
    torch.testing.assert_close(c_noise, torch.logit(t) / 4)  # ln σ = logit t
    assert FlowPrecond.sigma_range(ParamSettings()) == (0.002, 80.0)
    assert FlowPrecond.sigma_range(ParamSettings(flow_shift=3.0)) == pytest.approx((0.006, 240.0))


def test_exact_velocity_gives_the_exact_denoiser():
    x = MIX.sample(64, torch.Generator().manual_seed(1), sigma=0.7)
    for s in (0.01, 0.7, 5.0, 80.0):
        torch.testing.assert_close(FLOW(x, s), MIX.denoise(x, s), rtol=1e-9, atol=1e-9)


def test_euler_on_the_sigma_grid_is_euler_in_t():
    """rill's euler over σ_i equals a direct Euler integration of dx_t/dt = v on t_i = σ_i / (1 + σ_i)."""
    sigmas = karras(12, 0.002, 80.0)
    x = noise(32, 80.0)
    ours = SAMPLERS["euler"](FLOW, x, sigmas)
    ts = sigma_to_t(sigmas)
    x_t = x / (1 + sigmas[0])  # the same starting point, in flow coordinates
    v = FLOW.net
    for t, t_next in zip(ts[:-1], ts[1:]):
        sigma = t_to_sigma(t).expand(x.shape[0])
        # Euler step in t: x_{t'} = x_t + (t' − t)·v(x_t, t)
        x_t = x_t + (t_next - t) * v(x_t, sigma.log() / 4)
    torch.testing.assert_close(ours, x_t, rtol=1e-10, atol=1e-10)  # t = 0: x_t is the clean sample


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_runs_on_flow_unchanged(name):
    """Each sampler on the flow parametrisation of the exact v equals it on the exact denoiser."""
    sigmas = karras(8, 0.002, 80.0)
    x = noise(16, 80.0, seed=2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ours = SAMPLERS[name](FLOW, x, sigmas, generator=g1)
    ref = SAMPLERS[name](MIX, x, sigmas, generator=g2)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-7)
    if not INFO[name].stochastic:
        assert (ours - ref).abs().max() < 1e-8


def test_loss_is_the_velocity_mse_and_zero_for_the_true_velocity():
    x0 = torch.randn(8, 2, dtype=torch.float64)
    eps = torch.randn(8, 2, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1, 2, 5, 20, 80], dtype=torch.float64)
    oracle = lambda x_t, s, cond: eps - x0  # noqa: E731  (knows the pair it was given)
    assert flow_loss(oracle, x0, sigma=sigma, noise=eps).abs().max() < 1e-12
    zero = lambda x_t, s, cond: torch.zeros_like(x_t)  # noqa: E731
    torch.testing.assert_close(flow_loss(zero, x0, sigma=sigma, noise=eps), ((eps - x0) ** 2).mean(1).float())
    # ‖v_θ − v‖² = ‖D − x0‖² / t²: the x0-loss weighted by 1/t² = ((1 + σ)/σ)²
    net = build_net("mlp", None, dim=2, hidden=16, num_blocks=1).double()
    for p in net.parameters():
        nn.init.normal_(p, std=0.1)
    flow = FlowPrecond(net)
    d = flow(x0 + sigma[:, None] * eps, sigma)
    weight = ((1 + sigma) / sigma) ** 2
    torch.testing.assert_close(
        flow_loss(flow.velocity, x0, sigma=sigma, noise=eps), (weight * ((d - x0) ** 2).mean(1)).float()
    )


def test_training_sigmas_are_logit_normal_and_shifted():
    captured = []
    net = build_net("mlp", None, dim=2, hidden=16, num_blocks=1)

    class Spy(FlowPrecond):
        def velocity(self, x_t, sigma, cond=None):
            captured.append(sigma)
            return super().velocity(x_t, sigma, cond)

    x0 = torch.zeros(20_000, 2)
    for shift in (1.0, 4.0):
        captured.clear()
        Spy(net, shift).loss(x0, generator=torch.Generator().manual_seed(0))
        log_sigma = captured[0].log()  # logit(t) ~ N(ln s, 1)
        assert abs(log_sigma.mean() - math.log(shift)) < 0.03 and abs(log_sigma.std() - 1) < 0.03


def test_model_config_carries_the_shift():
    cfg = ModelConfig(net="mlp", net_preset=None, shape=(2,), text_encoder=None, parametrisation="flow",
                      flow_shift=2.0)  # fmt: skip
    model = DiffusionModel(cfg)
    assert model.parametrisation.shift == 2.0 and (cfg.sigma_min, cfg.sigma_max) == pytest.approx(
        (0.004, 160)
    )
    assert ModelConfig().param_settings().flow_shift == 1.0  # other parametrisations unchanged
    with pytest.raises(ValueError, match="model.flow_shift"):
        ModelConfig(parametrisation="flow", flow_shift=0.0)


def test_flow_matching_learns_a_2d_mixture():
    """A small MLP trained with the flow loss: the loss falls and Heun samples land on the mixture's modes."""
    torch.manual_seed(0)
    mix = GaussianMixture(torch.tensor([[-1.0, -0.5], [1.0, 0.5]]), torch.full((2, 2), 0.1), torch.ones(2))
    net = build_net("mlp", None, dim=2, hidden=64, num_blocks=2)
    flow = FlowPrecond(net)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    t0, losses = time.time(), []
    for _ in range(300):
        x0 = mix.sample(256, g).float()
        loss = flow.loss(x0, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-50:]) / 50
    assert last < 0.7 * first, (first, last)
    with torch.no_grad():
        x = torch.randn(2000, 2, generator=g) * 80.0
        out = SAMPLERS["heun"](flow, x, karras(20, 0.002, 80.0))
    near = (out[:, None] - mix.means[None].float()).norm(dim=-1).min(1)
    assert near.values.median() < 0.2  # samples sit on the modes (std 0.1 each)
    frac = (near.indices == 0).float().mean()
    assert 0.4 < frac < 0.6, frac  # and split evenly between them
    print(f"flow 2-D check: loss {first:.3f} -> {last:.3f}, {time.time() - t0:.1f} s")
