"""Annealed Langevin dynamics as a predictor–corrector sampler (Song et al. 2021, "Score-Based Generative
Modeling through Stochastic Differential Equations": PC sampling, Alg. 1 / 2, VE corrector of Alg. 4).

Step i: one predictor step from σ_i to σ_{i+1} (ancestral, or the paper's reverse-diffusion step), then
`n_corrector` Langevin steps at σ_{i+1} on p_{σ_{i+1}}, with the score (D − x)/σ² (EDM Eq. 3 / Tweedie).
The step to σ = 0 is the predictor alone, which returns D. Denoiser calls: n + n_corrector·(n − 1).

The step size ε uses each sample's own norms (so a sample does not depend on its batch neighbours) and is
capped for stability; `step_rule="fixed"` (ε = 2r²σ²) has no state-dependent bias and suits low-dimensional
data. The differences from the reference code and the measurements: docs/samplers.md, "Conventions and
measurements".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core.tensors import append_dims
from ._common import Callback, Generator, ancestral_sigmas, check_inputs, denoise, denoise_step, noise_like
from .registry import register

_PREDICTORS = ("ancestral", "reverse_diffusion", "none")
_STEP_RULES = ("snr", "fixed")


def langevin_nfe(n: int, opts: dict) -> int:
    """Denoiser calls for n steps: one per predictor step plus n_corrector at every σ > 0 after the first."""
    return n + int(opts.get("n_corrector", 1)) * (n - 1)


def _per_sample_norm(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)  # (B,)


@register(
    "langevin",
    order=1,
    stochastic=True,
    nfe=langevin_nfe,
    description="annealed Langevin predictor-corrector (Song et al. 2021, Alg. 1 / 4)",
)
def sample_langevin(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    n_corrector: int = 1,
    snr: float = 0.16,
    predictor: str = "ancestral",
    step_rule: str = "snr",
    max_step: float = 2.0,
) -> Tensor:
    """Predictor–corrector sampling with annealed Langevin correctors (Song et al. 2021, Alg. 1 / 2 / 4).

    n_corrector: Langevin steps after each predictor step (0: the predictor alone).
    snr: r in ε = 2·(r·‖z‖/‖score‖)² (Song et al. use 0.16 for VE models on CIFAR-10).
    predictor: "ancestral" (DDPM posterior step, = euler_ancestral), "reverse_diffusion" (the paper's
        Euler–Maruyama step of the reverse VE SDE) or "none" (pure annealed Langevin, Song & Ermon 2019).
    step_rule: "snr" (Song et al.'s rule, per sample) or "fixed" (ε = 2r²σ², the value "snr" takes in high
        dimension; state-independent, so unbiased in low dimension — see the module docstring).
    max_step: cap ε ≤ min(max_step·2r²σ², σ²) (module docstring); inf keeps only the σ² bound.
    """
    if int(n_corrector) != n_corrector or n_corrector < 0:
        raise ValueError(f"langevin: n_corrector must be a non-negative integer, got {n_corrector!r}")
    if not snr > 0 or not max_step > 0:
        raise ValueError(f"langevin: snr and max_step must be > 0, got snr={snr}, max_step={max_step}")
    if step_rule not in _STEP_RULES:
        raise ValueError(f"langevin: step_rule must be one of {_STEP_RULES}, got {step_rule!r}")
    if predictor not in _PREDICTORS:
        raise ValueError(f"langevin: predictor must be one of {_PREDICTORS}, got {predictor!r}")
    s = check_inputs(x, sigmas)
    for i in range(len(s) - 1):
        sigma, sigma_next = s[i], s[i + 1]
        denoised = denoise_step(denoiser, x, sigma, cond, i, callback)
        if sigma_next == 0:  # every predictor returns D on the step to σ = 0
            x = denoised
            continue
        if predictor == "ancestral":
            # DDPM posterior step (Ho et al. 2020, Eq. 7 in VE coordinates) to σ_{i+1}
            sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next, 1.0)
            x = denoised + (sigma_down / sigma) * (x - denoised) + noise_like(x, generator) * sigma_up
        elif predictor == "reverse_diffusion":
            # Song et al. 2021, reverse-diffusion predictor: x + (σ² − σ'²)·score + sqrt(σ² − σ'²)·z
            dvar = sigma**2 - sigma_next**2
            x = x + (dvar / sigma**2) * (denoised - x) + noise_like(x, generator) * math.sqrt(dvar)
        for _ in range(int(n_corrector)):
            x = _langevin_step(denoiser, x, sigma_next, cond, generator, snr, step_rule, max_step)
    return x


def _langevin_step(
    denoiser, x: Tensor, sigma: float, cond, generator: Generator, snr: float, step_rule: str, max_step: float
) -> Tensor:
    g = (denoise(denoiser, x, sigma, cond) - x) / sigma**2  # score, EDM Eq. 3
    z = noise_like(x, generator)
    if step_rule == "fixed":
        eps = min(2 * snr**2, 1.0) * sigma**2
        return x + eps * g + math.sqrt(2 * eps) * z
    # Song et al. 2021, Alg. 4 (VE corrector): ε = 2(r‖z‖/‖g‖)², x ← x + ε·g + sqrt(2ε)·z
    ratio = _per_sample_norm(z) / _per_sample_norm(g).clamp(min=torch.finfo(x.dtype).tiny)
    eps = (2 * (snr * ratio) ** 2).clamp(max=min(max_step * 2 * snr**2, 1.0) * sigma**2)  # (B,)
    eps = append_dims(eps, x.ndim)
    return x + eps * g + (2 * eps).sqrt() * z
