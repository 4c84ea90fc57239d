"""rill.schedules: conversions, VP tables (against diffusers), training noise distributions, σ grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rill.core.grids import (
    GRIDS,
    exponential,
    karras,
    logsnr_uniform,
    make_grid,
    polyexponential,
    vp_timesteps,
)
from rill.core.schedules import DiscreteVPSigmas, LogNormalSigmas, VPSchedule, vp_betas
from rill.core.sigma import alpha_bar_to_sigma, logsnr_to_sigma, sigma_to_alpha_bar, sigma_to_logsnr


@pytest.fixture(scope="module")
def schedulers():
    """diffusers' DDIM and Euler scheduler classes (imported once; the import is slow)."""
    pytest.importorskip("diffusers")
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler

    return DDIMScheduler, EulerDiscreteScheduler


# --- conversions --------------------------------------------------------------------------------------------
def test_conversions_round_trip():
    sigma = torch.logspace(-3, 2, 50, dtype=torch.float64)
    torch.testing.assert_close(alpha_bar_to_sigma(sigma_to_alpha_bar(sigma)), sigma, rtol=1e-10, atol=0)
    torch.testing.assert_close(logsnr_to_sigma(sigma_to_logsnr(sigma)), sigma, rtol=1e-12, atol=0)
    # λ = log(ᾱ / (1 − ᾱ)) = −2 log σ, and σ = 1 is ᾱ = 1/2, λ = 0
    ab = sigma_to_alpha_bar(sigma)
    torch.testing.assert_close(sigma_to_logsnr(sigma), (ab / (1 - ab)).log(), rtol=1e-9, atol=1e-9)
    one = torch.tensor([1.0], dtype=torch.float64)
    assert sigma_to_alpha_bar(one).item() == 0.5 and sigma_to_logsnr(one).item() == 0.0


# --- discrete VP tables -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, diffusers_name, start, end",
    [
        ("linear", "linear", 1e-4, 0.02),
        ("scaled_linear", "scaled_linear", 0.00085, 0.012),
        ("cosine", "squaredcos_cap_v2", 1e-4, 0.02),
    ],
)
def test_betas_match_diffusers(schedulers, kind, diffusers_name, start, end):
    ddim, _ = schedulers
    ref = ddim(beta_schedule=diffusers_name, beta_start=start, beta_end=end).betas.double()
    torch.testing.assert_close(vp_betas(kind, 1000, start, end), ref, rtol=2e-6, atol=1e-9)


def test_bad_betas_raise():
    with pytest.raises(ValueError, match="unknown beta schedule 'quadratic'"):
        vp_betas("quadratic")
    with pytest.raises(ValueError, match="num_timesteps must be >= 2, got 1"):
        vp_betas("linear", 1)


def test_zero_terminal_snr_matches_diffusers(schedulers):
    _, euler = schedulers
    ours = VPSchedule.make("scaled_linear", 1000, 0.00085, 0.012, zero_terminal_snr=True).alphas_cumprod
    ref = euler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=True
    ).alphas_cumprod.double()
    assert ours[-1].item() == pytest.approx(2**-24) and ref[-1].item() == pytest.approx(2**-24)  # ᾱ_T ≈ 0
    torch.testing.assert_close(ours[:-1], ref[:-1], rtol=1e-4, atol=1e-7)
    # unclamped, Lin et al.'s rescaling gives SNR_T = 0 exactly and keeps ᾱ_0
    plain = VPSchedule.make("scaled_linear", 1000, 0.00085, 0.012).alphas_cumprod
    from rill.core.schedules import rescale_zero_terminal_snr

    rescaled = rescale_zero_terminal_snr(plain)
    assert rescaled[-1].item() == 0.0 and rescaled[0].item() == pytest.approx(plain[0].item(), rel=1e-12)


def _stable_diffusion_table(scheduler_cls, spacing: str, offset: int):
    """A diffusers scheduler on Stable Diffusion's scaled-linear β table."""
    return scheduler_cls(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing=spacing,
        steps_offset=offset,
    )  # fmt: skip


@pytest.mark.parametrize(
    "spacing, offset", [("leading", 1), ("leading", 0), ("trailing", 0), ("linspace", 0)]
)
@pytest.mark.parametrize("n", [7, 10, 50])
def test_vp_timesteps_match_ddim(schedulers, spacing, offset, n):
    sched = _stable_diffusion_table(schedulers[0], spacing, offset)
    sched.set_timesteps(n)
    vp = VPSchedule.make("scaled_linear", 1000, 0.00085, 0.012)
    grid = vp_timesteps(n, vp, spacing, steps_offset=offset)
    t = vp.sigma_to_t(grid[:-1])
    np.testing.assert_allclose(t.numpy(), sched.timesteps.numpy(), atol=1e-6)
    assert grid[-1] == 0 and len(grid) == n + 1


@pytest.mark.parametrize("spacing, offset", [("leading", 1), ("trailing", 0)])
def test_vp_timesteps_match_euler_sigmas(schedulers, spacing, offset):
    sched = _stable_diffusion_table(schedulers[1], spacing, offset)
    sched.set_timesteps(12)
    grid = vp_timesteps(
        12, VPSchedule.make("scaled_linear", 1000, 0.00085, 0.012), spacing, steps_offset=offset
    )
    torch.testing.assert_close(grid, sched.sigmas.double(), rtol=1e-4, atol=0)


def test_sigma_to_t_and_back_are_inverse():
    vp = VPSchedule.make("linear")
    t = torch.tensor([0.0, 0.25, 1.0, 17.5, 500.3, 998.9, 999.0], dtype=torch.float64)
    torch.testing.assert_close(vp.sigma_to_t(vp.t_to_sigma(t)), t, rtol=0, atol=1e-9)
    ints = torch.arange(0, 1000, 37)
    torch.testing.assert_close(vp.t_to_sigma(ints.double()), vp.sigmas[ints], rtol=1e-12, atol=0)
    # outside the table: clamp to the ends
    edge = vp.sigma_to_t(torch.tensor([1e-6, 1e6], dtype=torch.float64))
    assert edge.tolist() == [0.0, 999.0]


def test_sigma_to_t_matches_diffusers(schedulers):
    _, euler = schedulers
    sched = euler()
    vp = VPSchedule(sched.alphas_cumprod.double())
    log_sigmas = np.log(vp.sigmas.numpy())
    sig = np.exp(np.linspace(log_sigmas[0], log_sigmas[-1], 23))[1:-1]
    ref = np.array([sched._sigma_to_t(np.array(s), log_sigmas) for s in sig]).ravel()
    np.testing.assert_allclose(vp.sigma_to_t(torch.from_numpy(sig)).numpy(), ref, atol=1e-6)


# --- training noise distributions ---------------------------------------------------------------------------
def test_lognormal_sigmas_statistics():
    dist = LogNormalSigmas(p_mean=-1.2, p_std=1.2)
    n = 40_000
    log_s = dist.sample(n, generator=torch.Generator().manual_seed(0)).double().log()
    assert abs(log_s.mean().item() + 1.2) < 4 * 1.2 / math.sqrt(n)
    assert abs(log_s.std().item() - 1.2) < 4 * 1.2 / math.sqrt(2 * n)


def test_discrete_vp_sigmas_come_from_the_table():
    vp = VPSchedule.make("linear", 50)
    s = DiscreteVPSigmas(vp).sample(500, generator=torch.Generator().manual_seed(0)).double()
    table = vp.sigmas.float().double()
    assert torch.isin(s, table).all() and len(torch.unique(s)) > 40


# --- sampling grids -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_grids_are_valid(name, n):
    grid = make_grid(name, n, sigma_min=0.002, sigma_max=80.0)
    assert grid.dtype == torch.float64 and grid.shape == (n + 1,)
    assert grid[-1] == 0 and (grid[:-1] > grid[1:]).all()
    assert grid[0].item() == pytest.approx(80.0, rel=1e-12)
    if n > 1 and not name.startswith("rill"):
        assert grid[-2].item() == pytest.approx(0.002, rel=1e-12)
    if name.startswith("rill"):  # the designed knots may stop short of σ_min (rill.core.designed_grid)
        assert grid[-2].item() >= 0.002 - 1e-12


def test_karras_rho_against_hand_computed_values():
    # σ_max^(1/ρ) = 2, σ_min^(1/ρ) = 1: the middle point is 1.5^7 = 17.0859375
    assert karras(3, 1.0, 128.0, rho=7.0).tolist() == pytest.approx([128.0, 17.0859375, 1.0, 0.0], rel=1e-12)
    assert karras(3, 1.0, 9.0, rho=2.0).tolist() == pytest.approx([9.0, 4.0, 1.0, 0.0], rel=1e-12)
    assert karras(3, 1.0, 5.0, rho=1.0).tolist() == pytest.approx([5.0, 3.0, 1.0, 0.0], rel=1e-12)


@pytest.mark.parametrize("n", [5, 12, 20])
def test_rill_nets_karras_share_blends_in_log_sigma(n):
    lo, hi = 0.002, 80.0
    rill_only = make_grid("rill-nets", n, lo, hi, karras_share=0.0)
    torch.testing.assert_close(
        make_grid("rill-nets", n, lo, hi, karras_share=1.0), karras(n, lo, hi), rtol=1e-12, atol=0
    )
    half = make_grid("rill-nets", n, lo, hi, karras_share=0.5)  # the geometric mean, knot by knot
    torch.testing.assert_close(
        half[:-1], (rill_only[:-1] * karras(n, lo, hi)[:-1]).sqrt(), rtol=1e-12, atol=0
    )
    with pytest.raises(ValueError, match="karras_share must lie in"):
        make_grid("rill-nets", n, lo, hi, karras_share=1.5)


def test_log_uniform_grids_agree():
    e = exponential(6, 0.01, 10.0)
    torch.testing.assert_close(e, logsnr_uniform(6, 0.01, 10.0), rtol=1e-12, atol=0)
    torch.testing.assert_close(e, polyexponential(6, 0.01, 10.0, rho=1.0), rtol=1e-12, atol=0)
    ratios = e[1:-1] / e[:-2]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 1000 ** (-1 / 5)), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "positive integer, got 0"),
        ({"n": 2.5}, "positive integer, got 2.5"),
        ({"n": 5, "sigma_min": 1.0, "sigma_max": 0.5}, "0 < sigma_min < sigma_max"),
        ({"n": 5, "sigma_min": 0.0}, "0 < sigma_min < sigma_max"),
        ({"n": 5, "sigma_max": math.inf}, "sigma_max < inf"),
    ],
)
def test_bad_grid_arguments_raise(kwargs, match):
    args = {"sigma_min": 0.002, "sigma_max": 80.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        karras(**args)


def test_bad_grid_name_and_vp_arguments_raise():
    vp = VPSchedule.make("linear", 100)
    with pytest.raises(ValueError, match="unknown σ grid 'karas'"):
        make_grid("karas", 10)
    with pytest.raises(ValueError, match="unknown timestep spacing 'uniform'"):
        vp_timesteps(10, vp, "uniform")
    with pytest.raises(ValueError, match=r"must be in \[1, 100\], got 101"):
        vp_timesteps(101, vp)
