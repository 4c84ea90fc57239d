"""rill.sample: the nfe budget is an exact bound on denoiser calls, "auto" picks from its table, errors teach;
rill's designed σ grid (rill.grids) is a valid grid for any σ range."""

from __future__ import annotations

import pytest
import torch

import rill
from rill.core.designed_grid import KNOTS, rill_grid
from rill.core.grids import karras, make_grid
from rill.core.mixture import GaussianMixture
from rill.samplers import AUTO, INFO, SAMPLERS, resolve, sample, sigmas_for, steps_for

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    return GaussianMixture.random(3, 4, seed=11)


class Counting:
    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        return self.denoiser(x, sigma, cond)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("nfe", [1, 2, 3, 4, 7, 10])
def test_call_count_is_the_largest_that_fits(mixture, name, nfe):
    info = INFO[name]
    if info.nfe(1, {}) > nfe:
        with pytest.raises(ValueError, match="at least"):
            sample(mixture, torch.randn(2, 3), nfe=nfe, sampler=name)
        return
    den = Counting(mixture)
    out = sample(
        den,
        torch.randn(2, 3, dtype=torch.float64),
        nfe=nfe,
        sampler=name,
        generator=torch.Generator().manual_seed(0),
    )
    n = steps_for(name, nfe)
    assert den.calls == info.nfe(n, {}) <= nfe
    assert info.nfe(n + 1, {}) > nfe  # one more step would break the budget
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_call_count_with_options(mixture):
    """Options that change the cost (Langevin's corrector steps) are counted."""
    den = Counting(mixture)
    sample(
        den,
        torch.randn(2, 3),
        nfe=10,
        sampler="langevin",
        n_corrector=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert den.calls == INFO["langevin"].nfe(
        steps_for("langevin", 10, {"n_corrector": 2}), {"n_corrector": 2}
    )
    assert den.calls <= 10


def test_heun_budgets():
    assert [steps_for("heun", k) for k in (1, 2, 3, 4, 5, 9)] == [1, 1, 2, 2, 3, 5]  # 2n − 1 calls


@pytest.mark.parametrize("nfe", [1, 2, 3, 5, 6, 10, 20, 50])
def test_auto_uses_its_table_within_budget(mixture, nfe):
    key = max(k for k in AUTO if k <= nfe)
    name, options, grid = resolve("auto", nfe)
    assert (name, grid) == (AUTO[key][0], AUTO[key][2]) and options == AUTO[key][1]
    den = Counting(mixture)
    out = sample(den, torch.randn(4, 3, dtype=torch.float64), nfe=nfe)
    assert 1 <= den.calls <= nfe and torch.isfinite(out).all()
    assert torch.equal(sigmas_for("auto", nfe), make_grid(grid, steps_for(name, nfe, options)))


def test_auto_beats_euler_on_karras(mixture):
    """At 10 calls, the auto choice is closer to the exact PF-ODE endpoint than Euler on Karras steps (the
    reference is Heun with 400 steps, accurate to ~1e-6 here)."""
    noise = torch.randn(64, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = sample(mixture, noise, nfe=799, sampler="heun", grid="karras")
    err = {
        s: float((sample(mixture, noise, nfe=10, sampler=s, grid=g) - ref).pow(2).mean().sqrt())
        for s, g in (("auto", None), ("euler", "karras"))
    }
    assert err["auto"] < 0.5 * err["euler"]


def test_returns_the_clean_sample():
    """With a point-mass data distribution D(x; σ) = μ, every deterministic sampler must land exactly on μ."""
    point = GaussianMixture(torch.tensor([[0.3, -1.2]]), torch.zeros(1, 2), torch.ones(1))
    for name, info in INFO.items():
        if info.stochastic:
            continue
        out = sample(point, torch.randn(5, 2, dtype=torch.float64), nfe=6, sampler=name)
        torch.testing.assert_close(out, point.means.expand(5, 2), rtol=0, atol=1e-9)


def test_noise_is_scaled_by_sigma_max(mixture):
    seen = []
    noise = torch.randn(3, 3, dtype=torch.float64)
    sample(
        mixture,
        noise,
        nfe=4,
        sampler="euler",
        sigma_max=20.0,
        callback=lambda i, x, s, d: seen.append((i, x.clone(), s)),
    )
    assert seen[0][2] == pytest.approx(20.0, rel=1e-12)
    torch.testing.assert_close(seen[0][1], noise * 20.0)


def test_sigmas_for_grids():
    s = sigmas_for("dpmpp_2m", 7, sigma_min=0.01, sigma_max=50.0)
    assert s.dtype == torch.float64 and len(s) == 8 and s[-1] == 0
    torch.testing.assert_close(s, karras(7, 0.01, 50.0))
    assert len(sigmas_for("heun", 7, grid="exponential")) == 5  # 4 steps = 7 calls
    custom = torch.tensor([10.0, 1.0, 0.1, 0.0], dtype=torch.float64)
    assert torch.equal(sigmas_for("euler", 3, grid=custom), custom)


def test_errors(mixture):
    noise = torch.randn(2, 3)
    for bad in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match="nfe"):
            sample(mixture, noise, nfe=bad)
    with pytest.raises(ValueError, match="Did you mean 'dpmpp_2m'"):
        sample(mixture, noise, nfe=5, sampler="dpmpp2m")
    with pytest.raises(ValueError, match="unknown σ grid"):
        sample(mixture, noise, nfe=5, sampler="euler", grid="karas")
    with pytest.raises(ValueError, match="cost 5 denoiser calls"):
        sigmas_for("heun", 4, grid=karras(3))
    with pytest.raises(ValueError, match="sigma_min"):
        sample(mixture, noise, nfe=5, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="noise"):
        sample(mixture, torch.zeros(2, 3, dtype=torch.long), nfe=5)


def test_lazy_export():
    assert rill.sample is sample


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, max(KNOTS), max(KNOTS) + 1, 50])
@pytest.mark.parametrize("lo,hi", [(0.002, 80.0), (0.03, 14.6), (1e-3, 1e3)])
def test_rill_grid_is_valid(n, lo, hi):
    s = rill_grid(n, lo, hi)
    assert s.dtype == torch.float64 and len(s) == n + 1 and s[-1] == 0
    assert float(s[0]) == pytest.approx(hi)
    assert (s[:-1] > s[1:]).all() and float(s[-2]) >= lo * (1 - 1e-12)
    assert torch.equal(make_grid("rill", n, lo, hi), s)


def test_rill_grid_scales_with_the_range():
    """Knots live in normalised log σ: the same relative positions for every range."""
    a, b = rill_grid(6, 0.002, 80.0)[:-1].log(), rill_grid(6, 0.03, 14.6)[:-1].log()
    ua = (a[0] - a) / (a[0] - torch.log(torch.tensor(0.002, dtype=torch.float64)))
    ub = (b[0] - b) / (b[0] - torch.log(torch.tensor(0.03, dtype=torch.float64)))
    torch.testing.assert_close(ua, ub)


def test_rill_grid_errors():
    with pytest.raises(ValueError, match="positive integer"):
        rill_grid(0)
    with pytest.raises(ValueError, match="sigma_min"):
        rill_grid(5, 1.0, 0.1)


def test_budget_below_one_step_names_the_minimum(monkeypatch):
    """No registered sampler needs > 1 call for one step today; a costlier one must name its minimum."""
    import dataclasses

    from rill.samplers import budget as sampling

    costly = dataclasses.replace(INFO["heun"], nfe=lambda n, opts: 2 * n + 1)
    monkeypatch.setitem(sampling.INFO, "heun", costly)
    with pytest.raises(ValueError, match="needs at least 3 denoiser calls"):
        sampling.steps_for("heun", 2)
    assert sampling.steps_for("heun", 5) == 2
