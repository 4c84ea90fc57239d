"""The sampler contract: one parametrized suite that every sampler in rill.samplers.SAMPLERS passes.

Shapes and dtypes, determinism, per-sample generators, finite output for 1–50 steps from σ_max = 80, the
callback, the exact number of denoiser calls, bad input; then the convergence order of every deterministic
ODE solver on the exact Gaussian mixture (against a DOP853 reference) and the first two moments of every
stochastic sampler. (Conformance with diffusers lives in test_conformance.py.)
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from rill.core.grids import karras
from rill.core.mixture import GaussianMixture
from rill.samplers import INFO, SAMPLERS, get_sampler

NAMES = list(SAMPLERS)
STOCHASTIC = [n for n in NAMES if INFO[n].stochastic]
POINTS = GaussianMixture.random(2, 4, seed=0)  # samples (B, 2)
IMAGES = GaussianMixture.random(2 * 4 * 4, 3, seed=1, event_shape=(2, 4, 4))  # samples (B, 2, 4, 4)


class Counting:
    """Wrap a denoiser: count calls, record σ, and check σ is a (B,) tensor in x's dtype (the contract)."""

    def __init__(self, denoiser):
        self.denoiser, self.calls, self.sigmas = denoiser, 0, []

    def __call__(self, x, sigma, cond=None):
        assert isinstance(sigma, torch.Tensor) and sigma.shape == (x.shape[0],) and sigma.dtype == x.dtype
        self.calls += 1
        self.sigmas.append(float(sigma[0]))
        return self.denoiser(x, sigma, cond)


def start(model: GaussianMixture, batch: int, dtype=torch.float64, sigma_max: float = 80.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *model.event_shape, generator=g, dtype=dtype) * sigma_max


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- contract -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("model", [POINTS, IMAGES], ids=["points", "images"])
def test_shape_and_dtype_preserved(name, dtype, model):
    x = start(model, 3, dtype)
    out = SAMPLERS[name](model, x, karras(4, 0.01, 80.0), generator=gen(1))
    assert out.shape == x.shape and out.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_generator(name):
    x, grid = start(IMAGES, 3), karras(5, 0.01, 80.0)
    a = SAMPLERS[name](IMAGES, x.clone(), grid, generator=gen(7))
    b = SAMPLERS[name](IMAGES, x.clone(), grid, generator=gen(7))
    assert torch.equal(a, b)
    c = SAMPLERS[name](IMAGES, x.clone(), grid, generator=gen(8))
    # a stochastic sampler must actually use its generator; a deterministic one must ignore it
    assert torch.equal(a, c) != INFO[name].stochastic


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_generators_do_not_depend_on_the_batch(name):
    x, grid = start(POINTS, 5), karras(6, 0.01, 80.0)
    batch = SAMPLERS[name](POINTS, x, grid, generator=[gen(100 + i) for i in range(5)])
    for i in range(5):
        alone = SAMPLERS[name](POINTS, x[i : i + 1], grid, generator=[gen(100 + i)])
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps", [1, 2, 5, 50])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_output_from_sigma_max_80(name, steps, dtype):
    x = start(IMAGES, 4, dtype)
    out = SAMPLERS[name](IMAGES, x, karras(steps, 0.002, 80.0), generator=gen(2))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_callback_once_per_step_with_the_step_sigma(name):
    grid = karras(7, 0.01, 80.0)
    seen = []

    def callback(i, x, sigma, denoised):
        assert x.shape == denoised.shape == (3, 2) and isinstance(sigma, float)
        seen.append((i, sigma))

    SAMPLERS[name](POINTS, start(POINTS, 3), grid, generator=gen(3), callback=callback)
    assert [i for i, _ in seen] == list(range(7))
    assert [s for _, s in seen] == pytest.approx(grid[:-1].tolist(), rel=1e-12)


NFE_CASES = [(n, {}) for n in NAMES] + [
    ("heun", {"s_churn": 5.0}),
    ("unipc", {"order": 3}),
    ("unipc", {"order": 1, "disable_corrector": [0, 1]}),
    ("ipndm", {"max_order": 2}),
    ("langevin", {"n_corrector": 0}),
    ("langevin", {"n_corrector": 3}),
    ("langevin", {"n_corrector": 2, "predictor": "reverse_diffusion"}),
    ("langevin", {"predictor": "none", "step_rule": "fixed"}),
]


@pytest.mark.parametrize("case", NFE_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("steps", [1, 2, 9])
def test_denoiser_calls_match_info_nfe(case, steps):
    name, opts = case
    den, grid = Counting(POINTS), karras(steps, 0.01, 80.0)
    SAMPLERS[name](den, start(POINTS, 2), grid, generator=gen(4), **opts)
    assert den.calls == INFO[name].nfe(steps, opts)
    if "s_churn" not in opts:  # every call is at a grid σ, never at σ = 0
        assert set(den.sigmas) <= set(grid[:-1].tolist())


def test_registry_is_consistent():
    assert set(INFO) == set(SAMPLERS)
    for name, info in INFO.items():
        assert info.name == name and info.order >= 1 and info.nfe(10, {}) >= 10


# --- identities between samplers ----------------------------------------------------------------------------
def test_reductions_between_samplers():
    x, grid = start(POINTS, 4), karras(8, 0.01, 80.0)
    run = lambda name, **o: SAMPLERS[name](POINTS, x, grid, generator=gen(5), **o)  # noqa: E731
    close = functools.partial(torch.testing.assert_close, atol=1e-12, rtol=1e-12)
    close(run("ddim", eta=0.0), run("euler"))  # DDIM(η=0) is Euler in σ (EDM App. B.3)
    close(run("unipc", order=1, disable_corrector=range(8)), run("euler"))  # UniP-1 = DDIM
    close(run("langevin", n_corrector=0), run("euler_ancestral"))  # same draws, same predictor
    close(run("ipndm", max_order=1), run("euler"))
    # lower_order_final changes dpmpp_3m only on grids shorter than 15 steps (diffusers' rule)
    assert not torch.allclose(run("dpmpp_3m", lower_order_final=True), run("dpmpp_3m"))
    long_grid = karras(16, 0.01, 80.0)
    close(*(SAMPLERS["dpmpp_3m"](POINTS, x, long_grid, lower_order_final=f) for f in (True, False)))


def test_ipndm_variable_step_weights_are_the_classical_ones_on_a_uniform_grid():
    x, grid = start(POINTS, 4, sigma_max=10.0), torch.linspace(10.0, 0.0, 9, dtype=torch.float64)
    a = SAMPLERS["ipndm"](POINTS, x, grid, variable_step=True, lower_order_final=False)
    b = SAMPLERS["ipndm"](POINTS, x, grid, variable_step=False, lower_order_final=False)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    grid = karras(8, 0.01, 10.0)  # non-uniform: the weights differ
    a, b = (SAMPLERS["ipndm"](POINTS, x, grid, variable_step=v) for v in (True, False))
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_dpmpp_2m_sde_matches_diffusers_given_the_same_noise(solver_type):
    """diffusers' "sde-dpmsolver++" draws its noise with torch.randn from the generator after each model call,
    as rill does: with one seed both walk the same path (test_conformance.py covers the ODE samplers)."""
    pytest.importorskip("diffusers")
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler

    sched = DPMSolverMultistepScheduler(
        prediction_type="sample", algorithm_type="sde-dpmsolver++", solver_type=solver_type
    )
    sched.set_timesteps(12)
    grid = sched.sigmas.double()
    x = start(POINTS, 16, torch.float32, sigma_max=float(grid[0]))
    sample, g = x / math.sqrt(1 + grid[0] ** 2), gen(3)  # diffusers keeps x_vp = x / sqrt(1 + σ²)
    for i, t in enumerate(sched.timesteps):
        x0 = POINTS(sample.double() * math.sqrt(1 + grid[i] ** 2), float(grid[i])).float()
        sample = sched.step(x0, t, sample, generator=g).prev_sample
    ours = SAMPLERS["dpmpp_2m_sde"](POINTS, x, grid, generator=gen(3), solver_type=solver_type)
    torch.testing.assert_close(ours, sample, atol=1e-4, rtol=0)


# --- convergence order on the exact mixture -----------------------------------------------------------------
# d = 2: σ 80 → 0.5, d = 16: σ 80 → 1.0 (smooth there); Karras grids of 80, 160, 320 steps reach the
# asymptotic regime (measured slopes within ±0.3 of the order). The error is that of x at σ_min, read
# from the callback, so the final jump to σ = 0 (which every solver takes differently) does not enter.
CONV = {
    2: (GaussianMixture.random(2, 6, seed=1, std_range=(0.2, 0.5)), 0.5),
    16: (GaussianMixture.random(16, 6, seed=1, std_range=(0.2, 0.5)), 1.0),
}
CONV_STEPS = [80, 160, 320]
SLOPE_TOL = 0.35
ODE_SOLVERS = [
    ("ddim", {"eta": 0.0}),
    ("euler", {}),
    ("heun", {}),
    ("dpmpp_2m", {}),
    ("dpmpp_3m", {}),
    ("unipc", {}),
    ("ipndm", {}),
]
# options that change the order (16-D), with the order they must show: the test can tell orders apart
VARIANTS = [
    ("dpmpp_3m", {"legacy": True}, 2),
    ("ipndm", {"variable_step": False}, 2),
    ("unipc", {"order": 1}, 2),
    ("unipc", {"order": 3}, 4),
]


@functools.cache
def ode_reference(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start points at σ = 80 and the PF-ODE solution at σ_min: dx/du = x − D(x; e^u), u = log σ, DOP853."""
    from scipy.integrate import solve_ivp

    model, sigma_min = CONV[d]
    x0 = start(model, 8, seed=11)

    def f(u, y):
        x = torch.from_numpy(y).reshape(x0.shape)
        return (x - model(x, math.exp(u))).reshape(-1).numpy()

    sol = solve_ivp(
        f,
        (math.log(80.0), math.log(sigma_min)),
        x0.reshape(-1).numpy(),
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
    )
    assert sol.success
    return x0, torch.from_numpy(sol.y[:, -1]).reshape(x0.shape)


def _record(seen: dict, i: int, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> None:
    seen[i] = x


def measured_order(name: str, opts: dict, d: int) -> tuple[float, list[float]]:
    model, sigma_min = CONV[d]
    x0, ref = ode_reference(d)
    errs = []
    for n in CONV_STEPS:
        seen: dict[int, torch.Tensor] = {}
        grid = karras(n + 1, sigma_min, 80.0)  # n steps reach σ_min, the last one goes to 0
        SAMPLERS[name](model, x0, grid, callback=functools.partial(_record, seen), **opts)
        errs.append(float((seen[n] - ref).norm(dim=1).max()))
    return -float(np.polyfit(np.log(CONV_STEPS), np.log(errs), 1)[0]), errs


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 16])
@pytest.mark.parametrize("case", ODE_SOLVERS, ids=lambda c: c[0])
def test_convergence_order_matches_info(case, d):
    name, opts = case
    slope, errs = measured_order(name, opts, d)
    assert abs(slope - INFO[name].order) <= SLOPE_TOL, f"{name}: slope {slope:.2f}, errors {errs}"


@pytest.mark.slow
@pytest.mark.parametrize("case", VARIANTS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_convergence_order_of_variants(case):
    name, opts, order = case
    slope, errs = measured_order(name, opts, 16)
    assert abs(slope - order) <= SLOPE_TOL, f"{name} {opts}: slope {slope:.2f}, errors {errs}"


# --- stochastic samplers: the first two moments of the data -------------------------------------------------
DIST = GaussianMixture.random(2, 4, seed=3, std_range=(0.2, 0.5), scale=2.0)
DIST16 = GaussianMixture.random(16, 4, seed=3, std_range=(0.2, 0.5), scale=2.0)
DIST_CASES = [(n, {}, 2, 3000) for n in STOCHASTIC if n != "langevin"] + [
    ("ddpm", {"variance": "large"}, 2, 3000),
    ("heun", {"s_churn": 10.0}, 2, 3000),
    ("dpmpp_2m_sde", {"solver_type": "heun"}, 2, 3000),
    # per-sample SNR steps are biased in 2-D (rill/samplers/langevin.py): fine in 16-D; "fixed" fine in 2-D
    ("langevin", {}, 16, 800),
    ("langevin", {"step_rule": "fixed"}, 2, 3000),
]


def moment_z(model: GaussianMixture, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean error, variance error) per coordinate in units of their Monte-Carlo standard errors."""
    w, mu, sd = model.weights[:, None], model.means, model.stds
    mean = (w * mu).sum(0)
    var = (w * (sd**2 + mu**2)).sum(0) - mean**2
    n, m, v = out.shape[0], out.mean(0), out.var(0)
    se_var = (((out - m) ** 4).mean(0) - v**2).clamp(min=0).div(n).sqrt()
    return (m - mean) / (v / n).sqrt(), (v - var) / se_var


def sample_moments(name: str, opts: dict, d: int, n: int, steps: int = 200, **extra):
    model = DIST if d == 2 else DIST16
    out = SAMPLERS[name](
        model, start(model, n), karras(steps, 0.002, 80.0), generator=gen(9), **opts, **extra
    )
    return moment_z(model, out)


@pytest.mark.slow
@pytest.mark.parametrize("case", DIST_CASES, ids=lambda c: f"{c[0]}-{c[1]}-d{c[2]}-n{c[3]}")
def test_stochastic_samplers_match_data_moments(case):
    # 200 steps leave a discretization bias of ≤ 2.5 standard errors (ancestral samplers, measured); 5 allowed
    z_mean, z_var = sample_moments(*case)
    assert z_mean.abs().max() < 5 and z_var.abs().max() < 5, (z_mean, z_var)


@pytest.mark.slow
def test_moment_check_detects_wrong_noise():
    _, z_var = sample_moments("dpmpp_2m_sde", {}, 2, 3000, s_noise=1.3)  # 30 % too much noise per step
    assert z_var.min() > 5


# --- bad input ----------------------------------------------------------------------------------------------
BAD_GRIDS = {
    "not decreasing": (torch.tensor([80.0, 1.0, 5.0, 0.0]), "strictly decreasing"),
    "not ending in 0": (torch.tensor([80.0, 1.0, 0.1]), "end in 0"),
    "nan": (torch.tensor([80.0, float("nan"), 0.0]), "finite"),
    "2-D": (torch.tensor([[80.0, 0.0]]), "1-D"),
    "single": (torch.tensor([0.0]), "at least 2"),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", BAD_GRIDS, ids=str)
def test_bad_sigma_grid_raises_before_any_call(name, bad):
    grid, match = BAD_GRIDS[bad]
    den = Counting(POINTS)
    with pytest.raises(ValueError, match=match):
        SAMPLERS[name](den, start(POINTS, 2), grid.double(), generator=gen(0))
    assert den.calls == 0


@pytest.mark.parametrize("name", NAMES)
def test_nan_in_x_raises(name):
    x = start(POINTS, 2)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        SAMPLERS[name](POINTS, x, karras(3, 0.01, 80.0))


@pytest.mark.parametrize("name", STOCHASTIC)
def test_wrong_number_of_generators_raises(name):
    with pytest.raises(ValueError, match="got 2 generators for a batch of 3"):
        SAMPLERS[name](POINTS, start(POINTS, 3), karras(3, 0.01, 80.0), generator=[gen(0), gen(1)])


def test_unknown_sampler_suggests_the_closest_name():
    with pytest.raises(ValueError, match="unknown sampler 'dpmpp2m'. Did you mean 'dpmpp_2m'"):
        get_sampler("dpmpp2m")
    assert get_sampler("unipc") is SAMPLERS["unipc"]


@pytest.mark.parametrize(
    "name, opts, match",
    [
        ("unipc", {"order": 4}, "order must be 1, 2 or 3, got 4"),
        ("unipc", {"variant": "bh3"}, "variant must be one of"),
        ("ipndm", {"max_order": 5}, "max_order must be 1, 2, 3 or 4, got 5"),
        ("dpmpp_2m", {"solver_type": "euler"}, "solver_type must be one of"),
        ("dpmpp_2m_sde", {"eta": -1.0}, "eta and s_noise must be >= 0"),
        ("langevin", {"predictor": "euler"}, "predictor must be one of"),
        ("langevin", {"n_corrector": -1}, "n_corrector must be a non-negative integer"),
        ("langevin", {"snr": 0.0}, "snr and max_step must be > 0"),
        ("langevin", {"step_rule": "adaptive"}, "step_rule must be one of"),
    ],
)
def test_bad_options_raise(name, opts, match):
    with pytest.raises(ValueError, match=match):
        SAMPLERS[name](POINTS, start(POINTS, 2), karras(3, 0.01, 80.0), **opts)
