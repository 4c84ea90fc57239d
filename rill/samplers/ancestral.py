"""First-order samplers in VE σ-space: Euler, DDIM (η), Euler-ancestral and DDPM's ancestral sampler.

In σ-space DDIM with η = 0 *is* Euler's method on the PF-ODE (Karras et al. 2022, Sec. 4 / App. B.3), and the
ancestral samplers are the same update with part of the step replaced by fresh noise (`ancestral_sigmas`).
"""

from __future__ import annotations

from torch import Tensor

from ._common import Callback, Generator, ancestral_sigmas, check_inputs, denoise_step, noise_like, to_d
from .registry import register


def _ancestral_loop(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    cond,
    generator: Generator,
    callback: Callback,
    eta: float,
    s_noise: float = 1.0,
) -> Tensor:
    s = check_inputs(x, sigmas)
    for i in range(len(s) - 1):
        denoised = denoise_step(denoiser, x, s[i], cond, i, callback)
        sigma_down, sigma_up = ancestral_sigmas(s[i], s[i + 1], eta)
        # Euler step of the PF-ODE to σ_down (EDM Eq. 3), then fresh noise back up to σ'
        x = denoised + (sigma_down / s[i]) * (x - denoised) if sigma_down > 0 else denoised
        if sigma_up > 0:
            x = x + noise_like(x, generator) * (s_noise * sigma_up)
    return x


@register(
    "euler",
    order=1,
    stochastic=False,
    description="Euler on the probability-flow ODE (Karras et al. 2022)",
)
def sample_euler(
    denoiser, x: Tensor, sigmas: Tensor, *, cond=None, generator: Generator = None, callback: Callback = None
) -> Tensor:
    """Euler's method on dx/dσ = (x − D(x; σ))/σ (EDM Eq. 3; Karras et al. 2022, Alg. 1 without churn)."""
    s = check_inputs(x, sigmas)
    for i in range(len(s) - 1):
        denoised = denoise_step(denoiser, x, s[i], cond, i, callback)
        x = x + to_d(x, s[i], denoised) * (s[i + 1] - s[i])
    return x


@register(
    "ddim",
    order=1,
    stochastic=False,
    description="DDIM with η (Song et al. 2021); η = 0 is deterministic",
)
def sample_ddim(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12) in σ-space: x' = x̂0 + σ_down·ε̂ + σ_up·z with ε̂ = (x − x̂0)/σ."""
    if eta < 0:
        raise ValueError(f"ddim: eta must be >= 0, got {eta}")
    return _ancestral_loop(denoiser, x, sigmas, cond, generator, callback, eta)


@register(
    "euler_ancestral",
    order=1,
    stochastic=True,
    description="Euler step + fresh noise",
)
def sample_euler_ancestral(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Euler step to σ_down plus σ_up fresh noise (k-diffusion's sample_euler_ancestral)."""
    return _ancestral_loop(denoiser, x, sigmas, cond, generator, callback, eta, s_noise)


@register(
    "ddpm",
    order=1,
    stochastic=True,
    description="DDPM ancestral sampling (Ho et al. 2020); the 1000-step baseline",
)
def sample_ddpm(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    variance: str = "small",
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) in σ-space; meant for the 1000-step VP grid.

    Mean: the posterior mean μ̃(x_t, x̂0) = x̂0 + (σ'²/σ²)(x − x̂0) (Eq. 7 in VE coordinates).
    variance="small": posterior variance β̃ (diffusers' fixed_small) — identical to DDIM with η = 1;
    variance="large": β_t (Ho et al.'s other choice); in VE coordinates the noise variance is β_t·(1 + σ'²),
    with β_t = (σ² − σ'²)/(1 + σ²).
    """
    if variance == "small":
        return _ancestral_loop(denoiser, x, sigmas, cond, generator, callback, eta=1.0)
    if variance != "large":
        raise ValueError(f"ddpm: variance must be 'small' or 'large', got {variance!r}")
    s = check_inputs(x, sigmas)
    for i in range(len(s) - 1):
        denoised = denoise_step(denoiser, x, s[i], cond, i, callback)
        x = denoised + (s[i + 1] ** 2 / s[i] ** 2) * (x - denoised)
        if s[i + 1] > 0:
            beta = (s[i] ** 2 - s[i + 1] ** 2) / (1 + s[i] ** 2)
            x = x + noise_like(x, generator) * (beta * (1 + s[i + 1] ** 2)) ** 0.5
    return x
