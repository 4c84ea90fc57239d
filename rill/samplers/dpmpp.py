"""DPM-Solver++ multistep samplers (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models"): exponential integrators of the data-prediction ODE in λ = −log σ.

In VE coordinates the PF-ODE solution from σ_s to σ_t is exactly
    x_t = (σ_t / σ_s)·x_s + σ_t ∫_{λ_s}^{λ_t} e^{λ} D(x_λ; σ_λ) dλ      (DPM-Solver++, Sec. 4.1)
and the solvers differ only in how D is extrapolated over the step from past evaluations (multistep: one
denoiser call per step). The step to σ = 0 is the first-order one, which returns D itself (as k-diffusion and
diffusers with final_sigmas_type="zero" do).

Conventions against diffusers and k-diffusion (dpmpp_3m's weights, `legacy`, `lower_order_final`) and the
measurements behind them: docs/samplers.md, "Conventions and measurements".
"""

from __future__ import annotations

import math

from torch import Tensor

from ._common import Callback, Generator, check_inputs, denoise_step, noise_like
from .registry import register

_SOLVER_TYPES = ("midpoint", "heun")


def _check_solver_type(name: str, solver_type: str) -> None:
    if solver_type not in _SOLVER_TYPES:
        raise ValueError(f"{name}: solver_type must be one of {_SOLVER_TYPES}, got {solver_type!r}")


@register(
    "dpmpp_2m",
    order=2,
    stochastic=False,
    description="DPM-Solver++(2M) (Lu et al. 2022)",
)
def sample_dpmpp_2m(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M): 2nd-order multistep in λ = −log σ (Lu et al. 2022, Alg. 2).

    solver_type "midpoint" (the paper's Alg. 2, k-diffusion, diffusers' default) or "heun" (diffusers' variant
    with the φ₂ coefficient; same order, slightly different constant).
    """
    _check_solver_type("dpmpp_2m", solver_type)
    return sample_dpmpp_2m_sde(
        denoiser,
        x,
        sigmas,
        cond=cond,
        generator=generator,
        callback=callback,
        eta=0.0,
        solver_type=solver_type,
    )


@register(
    "dpmpp_2m_sde",
    order=1,
    stochastic=True,
    description="DPM-Solver++(2M) SDE",
)
def sample_dpmpp_2m_sde(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) SDE (diffusers' "sde-dpmsolver++", k-diffusion's sample_dpmpp_2m_sde).

    η scales the injected noise: η = 0 is the ODE solver dpmpp_2m, η = 1 the reverse SDE. Fresh noise is drawn
    per step with `noise_like` (per-sample generators supported), not from a Brownian tree.
    """
    _check_solver_type("dpmpp_2m_sde", solver_type)
    if eta < 0 or s_noise < 0:
        raise ValueError(f"dpmpp_2m_sde: eta and s_noise must be >= 0, got eta={eta}, s_noise={s_noise}")
    s = check_inputs(x, sigmas)
    old_denoised, h_last = None, None
    for i in range(len(s) - 1):
        denoised = denoise_step(denoiser, x, s[i], cond, i, callback)
        if s[i + 1] == 0:  # first-order step to σ = 0: x = D (the limit of the update below as h → ∞)
            x = denoised
            continue
        h = math.log(s[i] / s[i + 1])  # λ_t − λ_s with λ = −log σ (rill.core.sigma.half_logsnr)
        eta_h = eta * h
        phi_1 = -math.expm1(-h - eta_h)  # 1 − e^{−(1+η)h}
        # DPM-Solver++ Sec. 4.1 first-order step (= DDIM); the SDE variant damps x by e^{−ηh} + noise
        x = (s[i + 1] / s[i] * math.exp(-eta_h)) * x + phi_1 * denoised
        if old_denoised is not None:
            r = h_last / h
            d1 = (denoised - old_denoised) * (1 / r)
            if solver_type == "midpoint":  # DPM-Solver++(2M), Lu et al. 2022 Alg. 2: D + (1/2r)(D − D_prev)
                x = x + (0.5 * phi_1) * d1
            else:  # "heun": exact integral of the linear interpolant (diffusers' solver_type="heun")
                x = x + (phi_1 / (-h - eta_h) + 1) * d1
        if eta > 0:  # exact variance of the linear SDE over the step (diffusers' sde-dpmsolver++)
            x = x + noise_like(x, generator) * (s[i + 1] * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise)
        old_denoised, h_last = denoised, h
    return x


@register(
    "dpmpp_3m",
    order=3,
    stochastic=False,
    description="DPM-Solver++(3M)",
)
def sample_dpmpp_3m(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    lower_order_final: bool = False,
    legacy: bool = False,
) -> Tensor:
    """DPM-Solver++(3M): 3rd-order multistep in λ = −log σ (k-diffusion's sample_dpmpp_3m_sde with η = 0;
    diffusers' DPMSolverMultistepScheduler with solver_order=3, solver_type="heun").

    Warm-up: the first step is first order, the second uses the 2nd-order "heun" coefficient.
    lower_order_final: use 2nd order for the penultimate step on grids of < 15 steps (diffusers' rule).
    legacy: reproduce k-diffusion / diffusers exactly. Their 2nd-difference term enters with half its Taylor
        coefficient (D2 ≈ h²D''/2 multiplied by the weight of h²D''), which leaves an O(h³) local error: that
        method is only 2nd-order accurate. The default uses the full coefficient and is 3rd order.
    """
    s = check_inputs(x, sigmas)
    n = len(s) - 1
    c2 = 1.0 if legacy else 2.0
    d_1, d_2, h_1, h_2 = None, None, None, None  # the two previous denoised values and their steps in λ
    for i in range(n):
        denoised = denoise_step(denoiser, x, s[i], cond, i, callback)
        if s[i + 1] == 0:  # first-order final step: x = D
            x = denoised
            continue
        h = math.log(s[i] / s[i + 1])
        phi_1 = -math.expm1(-h)  # 1 − e^{−h}
        phi_2 = 1 - phi_1 / h  # h·φ₂(h) in DPM-Solver's notation: (e^{−h} − 1)/h + 1
        # DPM-Solver++ Sec. 4.1, first-order term (= DDIM)
        x = (s[i + 1] / s[i]) * x + phi_1 * denoised
        if d_2 is not None and not (lower_order_final and n < 15 and i == n - 2):
            # 3rd-order multistep (Lu et al. 2022a, Taylor expansion of D in λ): 1st and 2nd differences
            r0, r1 = h_1 / h, h_2 / h
            d1_0 = (denoised - d_1) * (1 / r0)
            d1_1 = (d_1 - d_2) * (1 / r1)
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            d2 = (d1_0 - d1_1) * (1 / (r0 + r1))  # ≈ h²·D''/2, the u² Taylor coefficient (u = (λ − λ_s)/h)
            phi_3 = phi_2 / h - 0.5  # (e^{−h} − 1 + h)/h² − 1/2; ∫ e^{λ−λ_t}·(λ−λ_s)²/2 dλ = −h²·phi_3
            x = x + phi_2 * d1 - (c2 * phi_3) * d2
        elif d_1 is not None:
            # 2nd-order multistep, exact integral of the linear interpolant of D in λ ("heun" coefficient)
            x = x + phi_2 * ((denoised - d_1) * (h / h_1))
        d_1, d_2 = denoised, d_1
        h_1, h_2 = h, h_1
    return x
