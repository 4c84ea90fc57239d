"""Training objectives. Each returns a per-sample loss vector (B,); the trainer takes the mean.

- EDM (Karras et al. 2022): σ ~ log-normal, loss λ(σ)·‖D(x0 + σn; σ) − x0‖², λ = 1/c_out² (Eq. 2, 8).
- ε and v on a discrete VP schedule (Ho et al. 2020; Salimans & Ho 2022), optionally weighted by min-SNR-γ
  (Hang et al. 2023): ε-loss × min(SNR, γ)/SNR, v-loss × min(SNR, γ)/(SNR + 1).

Losses are means over the non-batch dimensions (so their scale does not depend on the image size).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .schedules import LogNormalSigmas, VPSchedule
from .utils import append_dims

__all__ = ["edm_weight", "edm_loss", "min_snr_weight", "vp_loss", "VP_PREDICTIONS"]

VP_PREDICTIONS = ("epsilon", "v")
_EDM_SIGMAS = LogNormalSigmas()  # P_mean = −1.2, P_std = 1.2 (EDM Table 1)
Cond = dict[str, Tensor] | None


def _mean_per_sample(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


def edm_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)² = 1 / c_out²  (EDM Eq. 8 / Table 1; EDMPrecond.loss_weight)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(
    denoiser: Callable[[Tensor, Tensor, Cond], Tensor],
    x0: Tensor,
    cond: Cond = None,
    *,
    sigma_data: float = 0.5,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    distribution: LogNormalSigmas = _EDM_SIGMAS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """EDM loss per sample: λ(σ)·mean‖D(x0 + σ·n; σ) − x0‖², ln σ ~ N(P_mean, P_std²)  (EDM Eq. 2, 8).

    `sigma` (B,) and `noise` (like x0) may be given (tests, exact resume); otherwise they are drawn from
    `generator` on the CPU and moved to x0's device, so a run is reproducible whatever the device.
    """
    b = x0.shape[0]
    if sigma is None:
        sigma = distribution.sample(b, generator=generator).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    sigma = sigma.to(device=x0.device, dtype=x0.dtype)
    # EDM Eq. 2: the noisy input y + n with n ~ N(0, σ²I)
    x = x0 + append_dims(sigma, x0.ndim) * noise
    d = denoiser(x, sigma, cond)
    # EDM Eq. 8: E_σ,y,n [ λ(σ) ‖D(y + n; σ) − y‖² ]
    return edm_weight(sigma, sigma_data) * _mean_per_sample((d.float() - x0.float()) ** 2)


def min_snr_weight(snr: Tensor, gamma: float | None, prediction: str) -> Tensor:
    """min-SNR-γ weight (Hang et al. 2023, Sec. 3.4): ε-loss min(SNR, γ)/SNR, v-loss min(SNR, γ)/(SNR + 1).

    gamma None → all ones (the plain unweighted ε / v MSE of Ho et al. 2020 / Salimans & Ho 2022).
    """
    if prediction not in VP_PREDICTIONS:
        raise ValueError(f"prediction {prediction!r} is not one of {VP_PREDICTIONS}")
    if gamma is None:
        return torch.ones_like(snr)
    clipped = snr.clamp(max=gamma)
    return clipped / snr if prediction == "epsilon" else clipped / (snr + 1)


def vp_loss(
    net: Callable[[Tensor, Tensor, Cond], Tensor],
    schedule: VPSchedule,
    x0: Tensor,
    cond: Cond = None,
    *,
    prediction: str = "epsilon",
    min_snr_gamma: float | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ε- or v-prediction loss per sample on a discrete VP schedule, t ~ U{0, …, T−1}.

    net(x_t, t, cond) sees the VP sample x_t and the integer timestep t (as a float tensor (B,)).
    """
    if prediction not in VP_PREDICTIONS:
        raise ValueError(f"prediction {prediction!r} is not one of {VP_PREDICTIONS}")
    b = x0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.num_timesteps, (b,), generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    ac = schedule.alphas_cumprod.to(x0.device)[t.to(x0.device).long()].to(x0.dtype)  # ᾱ_t (B,)
    a, s = append_dims(ac.sqrt(), x0.ndim), append_dims((1 - ac).sqrt(), x0.ndim)
    # Ho et al. 2020, Eq. 4: x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε
    x_t = a * x0 + s * noise
    # Salimans & Ho 2022, Sec. 4: v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x0
    target = noise if prediction == "epsilon" else a * noise - s * x0
    out = net(x_t, t.to(device=x0.device, dtype=x0.dtype), cond)
    snr = ac / (1 - ac)  # SNR(t) = ᾱ / (1 − ᾱ) = 1/σ²
    # Ho et al. 2020, Eq. 14 (ε) / Salimans & Ho 2022 (v), weighted by min-SNR-γ (Hang et al. 2023)
    return min_snr_weight(snr.float(), min_snr_gamma, prediction) * _mean_per_sample(
        (out.float() - target.float()) ** 2
    )
