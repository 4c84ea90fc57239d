"""Heun's 2nd-order method with optional churn: EDM's Algorithm 2 (Karras et al. 2022)."""

from __future__ import annotations

from torch import Tensor

from ._common import Callback, Generator, check_inputs, denoise, denoise_step, noise_like, to_d
from .registry import register


def heun_nfe(n: int, opts: dict) -> int:
    return 2 * n - 1  # the last step, to σ = 0, is an Euler step (Alg. 2, line 9)


@register(
    "heun",
    order=2,
    stochastic=False,
    nfe=heun_nfe,
    description="EDM Algorithm 2, optional churn",
)
def sample_heun(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> Tensor:
    """EDM Alg. 2: optional churn σ̂ = σ(1 + γ), then an Euler step and a trapezoidal correction."""
    s = check_inputs(x, sigmas)
    n = len(s) - 1
    for i in range(n):
        gamma = min(s_churn / n, 2**0.5 - 1) if s_tmin <= s[i] <= s_tmax else 0.0
        sigma_hat = s[i] * (1 + gamma)
        if gamma > 0:  # Alg. 2 lines 5–6: raise the noise level to σ̂
            x = x + noise_like(x, generator) * (s_noise * (sigma_hat**2 - s[i] ** 2) ** 0.5)
        denoised = denoise_step(denoiser, x, sigma_hat, cond, i, callback)
        d = to_d(x, sigma_hat, denoised)
        dt = s[i + 1] - sigma_hat
        x_next = x + d * dt  # line 8
        if s[i + 1] > 0:  # lines 9–11: 2nd-order correction
            d_next = to_d(x_next, s[i + 1], denoise(denoiser, x_next, s[i + 1], cond))
            x_next = x + (0.5 * dt) * (d + d_next)
        x = x_next
    return x
