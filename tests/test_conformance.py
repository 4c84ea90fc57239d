"""Conformance with diffusers: rill's samplers and diffusers' schedulers agree on the same model and σ grid.

The model is the exact Gaussian mixture, seen by diffusers as an ε-prediction network on its discrete VP
schedule and by rill as the denoiser itself; the grid is taken from the scheduler after set_timesteps
(converted to VE σ). Both sides run in float64, but diffusers' Euler and DPM-Solver cast the sample to float32
inside a step and its ε → x0 conversion at σ ≈ 157 cancels ~5 digits, so agreement is ~1e-7 per step
(measured: at most 1.1e-5 over these cases); hence the 1e-4 tolerance. Conventions bridged by
benchmarks/_peer.py, documented in docs/samplers.md:
- the exact model is evaluated at the σ the scheduler uses for that call: on Karras grids DPM-Solver, UniPC
  and DEIS feed the network a timestep rounded to an integer (`timestep_gap` ≤ 0.5), which a discrete network
  needs but which does not change the solver's own σ;
- DDIM needs clip_sample=False (its default clips x0 to [-1, 1]) and set_alpha_to_one=True (else its last step
  lands on σ(t=0) ≈ 0.01, not on the clean sample);
- DPM-Solver++(3M): diffusers (as k-diffusion) weights the 2nd divided difference with half its Taylor
  coefficient, which makes it 2nd-order accurate; rill's dpmpp_3m is 3rd order by default and reproduces
  diffusers with legacy=True, which is what is compared;
- UniPC with lower_order_final=False or solver_type="bh1" returns inf/NaN on grids ending in σ = 0 (a 0·∞ in
  diffusers' last step); rill always takes the first-order step to σ = 0 there, so those are not compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives beside rill/

from benchmarks._peer import (  # noqa: E402
    log_uniform_betas,
    make_scheduler,
    run_scheduler,
    scheduler_grid,
    timestep_gap,
)
from rill.core.mixture import GaussianMixture  # noqa: E402
from rill.samplers import get_sampler  # noqa: E402

RTOL = 1e-4
_K = {"use_karras_sigmas": True}
_NO_CLIP = {"clip_sample": False, "set_alpha_to_one": True}

# (id, diffusers kind, scheduler config, steps, rill sampler, rill options)
CASES = [
    ("ddim-leading", "ddim", _NO_CLIP, 10, "ddim", {"eta": 0.0}),
    ("ddim-leading-25", "ddim", _NO_CLIP, 25, "ddim", {"eta": 0.0}),
    ("ddim-trailing", "ddim", {**_NO_CLIP, "timestep_spacing": "trailing"}, 8, "ddim", {"eta": 0.0}),
    ("euler-karras", "euler", _K, 10, "euler", {}),
    ("euler-linspace", "euler", {}, 10, "euler", {}),
    ("euler-trailing", "euler", {"timestep_spacing": "trailing"}, 7, "euler", {}),
    ("heun-karras", "heun", _K, 6, "heun", {}),
    ("heun-linspace", "heun", {}, 5, "heun", {}),
    ("dpmpp_2m-karras", "dpmpp", _K, 10, "dpmpp_2m", {}),
    ("dpmpp_2m-linspace", "dpmpp", {}, 12, "dpmpp_2m", {}),
    ("dpmpp_2m-heun-type", "dpmpp", {"solver_type": "heun"}, 7, "dpmpp_2m", {"solver_type": "heun"}),
    (
        "dpmpp_3m-karras-20",
        "dpmpp",
        {**_K, "solver_order": 3, "solver_type": "heun"},
        20,
        "dpmpp_3m",
        {"legacy": True},
    ),
    (
        "dpmpp_3m-lower-final",
        "dpmpp",
        {"solver_order": 3, "solver_type": "heun"},
        7,
        "dpmpp_3m",
        {"lower_order_final": True, "legacy": True},
    ),
    ("dpmpp_2m-edm", "edm_dpmpp", {}, 10, "dpmpp_2m", {}),
    ("unipc-karras", "unipc", _K, 10, "unipc", {"order": 2}),
    ("unipc-linspace", "unipc", {}, 8, "unipc", {"order": 2}),
    ("unipc3-linspace", "unipc", {"solver_order": 3}, 7, "unipc", {"order": 3}),
    ("unipc3-karras-20", "unipc", {**_K, "solver_order": 3}, 20, "unipc", {"order": 3}),
    (
        "unipc3-edm-range",
        "unipc",
        {**_K, "solver_order": 3, "trained_betas": log_uniform_betas()},
        6,
        "unipc",
        {"order": 3},
    ),
]


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    return GaussianMixture.random(4, 5, std_range=(0.03, 0.25), seed=3)


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample relative difference ||a − b|| / ||b||, shape (B,)."""
    return (a - b).norm(dim=1) / b.norm(dim=1)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_diffusers(mixture, case):
    _, kind, config, steps, name, options = case
    sched = make_scheduler(kind, steps, **config)
    grid = scheduler_grid(sched, kind)
    assert float(grid[-1]) == 0.0, "every compared scheduler must end at σ = 0 (the clean sample)"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, mixture.dim, generator=g, dtype=torch.float64) * grid[0]
    x_peer, calls = run_scheduler(sched, kind, mixture, x)
    x_rill = get_sampler(name)(mixture, x, grid, **options)
    assert x_rill.dtype == torch.float64 and torch.isfinite(x_peer).all()
    assert calls == len(sched.timesteps)
    assert _rel_diff(x_rill, x_peer).max() < RTOL


@pytest.mark.parametrize("case", [c for c in CASES if c[1] != "ddim"], ids=lambda c: c[0])
def test_fed_timestep_is_the_solver_sigma(case):
    """The σ our exact model uses is that of the timestep diffusers feeds, up to diffusers' rounding."""
    _, kind, config, steps, *_ = case
    sched = make_scheduler(kind, steps, **config)
    assert timestep_gap(sched, kind) <= 0.5 + 1e-3


def test_ddim_linspace_is_not_a_single_grid():
    """DDIM steps t → t − T//n whatever the spacing: with linspace timesteps it lands between the next
    timesteps,
    so there is no σ grid to compare on (documented divergence, not a rill convention)."""
    sched = make_scheduler("ddim", 10, timestep_spacing="linspace", **_NO_CLIP)
    with pytest.raises(ValueError, match="do not land"):
        scheduler_grid(sched, "ddim")
