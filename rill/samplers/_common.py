"""What every sampler shares: input checks, the denoiser call, per-sample noise, the ODE derivative."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..core.tensors import sigma_batch

Generator = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[int, Tensor, float, Tensor], None] | None


def check_inputs(x: Tensor, sigmas: Tensor) -> list[float]:
    """Validate a σ grid (1-D, finite, strictly decreasing, ending in 0) and x; return σ as Python floats."""
    if not isinstance(sigmas, Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(
            "sigmas must be a 1-D tensor with at least 2 entries (σ_max, …, 0); "
            f"got {type(sigmas).__name__} of shape {getattr(sigmas, 'shape', None)}"
        )
    s = sigmas.detach().to("cpu", torch.float64)
    if not torch.isfinite(s).all():
        raise ValueError(f"sigmas must be finite; got {s.tolist()}")
    if s[-1] != 0:
        raise ValueError(
            f"sigmas must end in 0 (the clean sample); the last entry is {s[-1].item():g}. "
            "Build grids with rill.schedules (they append the 0)."
        )
    if not (s[:-1] > s[1:]).all():
        bad = int(torch.nonzero(s[:-1] <= s[1:])[0])
        raise ValueError(
            f"sigmas must be strictly decreasing; sigmas[{bad}]={s[bad]:g} <= "
            f"sigmas[{bad + 1}]={s[bad + 1]:g}"
        )
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"x contains {n_bad} non-finite values (NaN or inf); check the starting noise")
    return s.tolist()


def noise_like(x: Tensor, generator: Generator) -> Tensor:
    """Standard normal noise shaped like x. With a list of B generators, sample i draws only from generator i,
    so it does not depend on its batch neighbours (reproducible whatever the batch size)."""
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]}; pass one per sample")
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, dtype=x.dtype, device=g.device) for g in generator]
    ).to(x.device)


def denoise(denoiser, x: Tensor, sigma: float, cond) -> Tensor:
    """One denoiser call with σ as a (B,) tensor."""
    return denoiser(x, sigma_batch(sigma, x), cond)


def denoise_step(denoiser, x: Tensor, sigma: float, cond, step: int, callback: Callback) -> Tensor:
    """The denoiser call that opens step `step`, reported to the callback as (step, x, σ, x̂0)."""
    denoised = denoise(denoiser, x, sigma, cond)
    if callback is not None:
        callback(step, x, sigma, denoised)
    return denoised


def to_d(x: Tensor, sigma: float, denoised: Tensor) -> Tensor:
    """dx/dσ of the probability-flow ODE (EDM Eq. 3 with σ(t) = t): (x − D(x; σ)) / σ."""
    return (x - denoised) / sigma


def ancestral_sigmas(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split the step σ → σ' into a deterministic part to σ_down and fresh noise σ_up, σ_down² + σ_up² = σ'².

    σ_up = η·σ'·sqrt(σ² − σ'²)/σ is DDIM's σ_t(η) (Song et al. 2021, Eq. 16) written in VE coordinates;
    η = 1 gives the DDPM posterior q(x_{t−1} | x_t, x0) (Ho et al. 2020, Eq. 7).
    """
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * sigma_next * (sigma**2 - sigma_next**2) ** 0.5 / sigma)
    return (sigma_next**2 - up**2) ** 0.5, up
