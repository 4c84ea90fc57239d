"""Noise schedules in σ-space (x = x0 + σ·n): discrete VP ("DDPM") schedules seen in σ, and the training
noise-level distributions. Conversions between σ, ᾱ and λ live in rill.core.sigma; sampling grids in
rill.core.grids.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .sigma import alpha_bar_to_sigma

__all__ = [
    "BETAS",
    "vp_betas",
    "rescale_zero_terminal_snr",
    "VPSchedule",
    "LogNormalSigmas",
    "DiscreteVPSigmas",
]


# --- discrete VP schedules ------------------------------------------------------------------------
def _linear(n: int, start: float, end: float) -> Tensor:
    return torch.linspace(start, end, n, dtype=torch.float64)


def _scaled_linear(n: int, start: float, end: float) -> Tensor:
    return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2


def _cosine(n: int, start: float, end: float) -> Tensor:
    s = 0.008
    t = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


# linear: Ho et al. 2020;  scaled_linear: Stable Diffusion (linear in sqrt β; pass 0.00085, 0.012);
# cosine: Nichol & Dhariwal 2021, Eq. 17 (s = 0.008, β clipped at 0.999; beta_start / beta_end unused)
BETAS: dict[str, Callable[[int, float, float], Tensor]] = {
    "linear": _linear,
    "scaled_linear": _scaled_linear,
    "cosine": _cosine,
}


def vp_betas(
    kind: str = "linear", num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """β_t of a discrete VP ("DDPM") schedule, float64 (see BETAS)."""
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
    if kind not in BETAS:
        raise ValueError(f"unknown beta schedule {kind!r}; choose one of {list(BETAS)}")
    return BETAS[kind](num_timesteps, beta_start, beta_end)


def rescale_zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are Flawed"), Algorithm 1:
    shift and scale sqrt(ᾱ) so the last timestep has SNR exactly 0 (σ = ∞)."""
    s = alphas_cumprod.sqrt()
    s0, s_last = s[0].clone(), s[-1].clone()
    s = (s - s_last) * s0 / (s0 - s_last)
    return s**2


@dataclass(frozen=True)
class VPSchedule:
    """A discrete VP schedule seen in σ: timestep t ↔ σ_t = sqrt((1 − ᾱ_t) / ᾱ_t)."""

    alphas_cumprod: Tensor  # (T,) float64

    @classmethod
    def make(
        cls,
        kind: str = "linear",
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        zero_terminal_snr: bool = False,
    ) -> VPSchedule:
        ac = torch.cumprod(1 - vp_betas(kind, num_timesteps, beta_start, beta_end), 0)
        if zero_terminal_snr:
            ac = rescale_zero_terminal_snr(ac)
            ac[-1] = ac[-1].clamp(min=2**-24)  # keep σ_T finite (as diffusers does) so grids can start there
        return cls(ac)

    @property
    def num_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    @property
    def sigmas(self) -> Tensor:
        return alpha_bar_to_sigma(self.alphas_cumprod)

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Continuous timestep for σ, linear in log σ between neighbours (k-diffusion/diffusers)."""
        log_sigmas = self.sigmas.log().to(sigma.device)
        log_sigma = sigma.to(torch.float64).clamp(min=1e-20).log()
        dists = log_sigma.reshape(-1, 1) - log_sigmas.reshape(1, -1)
        low = (dists >= 0).cumsum(1).argmax(1).clamp(max=log_sigmas.shape[0] - 2)
        low_v, high_v = log_sigmas[low], log_sigmas[low + 1]
        w = ((low_v - log_sigma.reshape(-1)) / (low_v - high_v)).clamp(0, 1)
        return ((1 - w) * low + w * (low + 1)).reshape(sigma.shape).to(sigma.dtype)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """σ at a (possibly fractional) timestep, interpolating log σ linearly."""
        t = t.to(torch.float64)
        lo = t.floor().long().clamp(0, self.num_timesteps - 1)
        hi = t.ceil().long().clamp(0, self.num_timesteps - 1)
        log_s = self.sigmas.log()
        w = t - t.floor()
        return ((1 - w) * log_s[lo] + w * log_s[hi]).exp()


# --- training noise distributions -----------------------------------------------------------------
@dataclass(frozen=True)
class LogNormalSigmas:
    """EDM training distribution: ln σ ~ N(P_mean, P_std²) (Karras et al. 2022, Table 1)."""

    p_mean: float = -1.2
    p_std: float = 1.2

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        z = torch.randn(n, generator=generator, device=device)
        return (self.p_mean + self.p_std * z).exp()


@dataclass(frozen=True)
class DiscreteVPSigmas:
    """DDPM training distribution: t ~ U{0, …, T−1}, σ = σ_t of the schedule (Ho et al. 2020, Alg. 1)."""

    schedule: VPSchedule

    def sample(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        t = torch.randint(0, self.schedule.num_timesteps, (n,), generator=generator, device=device)
        return self.schedule.sigmas.to(device)[t].float()
