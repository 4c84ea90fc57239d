"""Improved PNDM (iPNDM; Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator",
the iPNDM baseline of their experiments; k-diffusion's sample_ipndm): explicit Adams–Bashforth on the PF-ODE
dx/dσ = (x − D)/σ, one denoiser call per step, the order rising 1, 2, 3, … up to `max_order` as past
derivatives accumulate.

By default the AB weights are those of the variable-step Adams–Bashforth method (the exact integral of the
polynomial through the past derivatives at their true σ); `variable_step=False` restores k-diffusion's
constant weights. Why, and what was measured: docs/samplers.md, "Conventions and measurements".
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ._common import Callback, Generator, check_inputs, denoise_step, to_d
from .registry import register

# Classical Adams–Bashforth weights (Hairer, Nørsett & Wanner, Sec. III.1), newest derivative first
_AB_FIXED = {
    1: [1.0],
    2: [1.5, -0.5],
    3: [23 / 12, -16 / 12, 5 / 12],
    4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
}


def ab_weights(sigma_next: float, sigmas_past: list[float]) -> list[float]:
    """Variable-step Adams–Bashforth weights c_j with x' = x + (σ' − σ)·Σ_j c_j·d(σ_j).

    sigmas_past = [σ, σ_1, σ_2, …] (newest first). With u = (τ − σ)/(σ' − σ) the nodes are u_j and
    Σ_j c_j u_j^k = ∫_0^1 u^k du = 1/(k + 1) for k < m (exact for polynomials of degree < m).
    """
    m = len(sigmas_past)
    if m == 1:
        return [1.0]
    h = sigma_next - sigmas_past[0]
    u = (np.asarray(sigmas_past) - sigmas_past[0]) / h
    k = np.arange(m)
    return np.linalg.solve(u[None, :] ** k[:, None], 1.0 / (k + 1)).tolist()


@register(
    "ipndm",
    order=4,
    stochastic=False,
    description="improved PNDM (Zhang & Chen 2023), order up to 4",
)
def sample_ipndm(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    max_order: int = 4,
    variable_step: bool = True,
    lower_order_final: bool = True,
) -> Tensor:
    """iPNDM: Adams–Bashforth on dx/dσ with orders 1 … max_order (Zhang & Chen 2023, DEIS paper, iPNDM).

    variable_step: exact variable-step AB weights (default; see module docstring) or k-diffusion's constants.
    lower_order_final: the step to σ = 0 is an Euler step, i.e. returns D, as in every other rill sampler;
        False extrapolates the polynomial down to σ = 0 as k-diffusion does (measured: docs/samplers.md).
    """
    if max_order not in (1, 2, 3, 4):
        raise ValueError(f"ipndm: max_order must be 1, 2, 3 or 4, got {max_order!r}")
    s = check_inputs(x, sigmas)
    n = len(s) - 1
    ds: list[Tensor] = []  # past derivatives, newest first
    for i in range(n):
        denoised = denoise_step(denoiser, x, s[i], cond, i, callback)
        if s[i + 1] == 0 and lower_order_final:  # Euler step to σ = 0 (EDM Eq. 3): x = D
            x = denoised
            continue
        ds = [to_d(x, s[i], denoised), *ds][:max_order]
        order = len(ds)
        w = ab_weights(s[i + 1], s[i - order + 1 : i + 1][::-1]) if variable_step else _AB_FIXED[order]
        # Adams–Bashforth step of order `order` on dx/dσ (Hairer et al., Sec. III.5 variable-step form)
        incr = ds[0] * w[0]
        for c, d in zip(w[1:], ds[1:]):
            incr = incr + d * c
        x = x + incr * (s[i + 1] - s[i])
    return x
