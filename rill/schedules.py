"""Noise schedules in σ-space (x = x0 + σ·n).

Conversions (VP ↔ VE):  ᾱ = 1 / (1 + σ²),  σ = sqrt((1 − ᾱ) / ᾱ),  log-SNR λ = log(ᾱ / (1 − ᾱ)) = −2 log σ.
A VP sample is x_vp = sqrt(ᾱ)·x, so any VP model is a VE model seen through a rescaling (EDM, Sec. 2).

Sampling grids return a float64 tensor of n + 1 decreasing values ending in 0: n steps, the last one to σ = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "sigma_to_alpha_bar",
    "alpha_bar_to_sigma",
    "sigma_to_logsnr",
    "logsnr_to_sigma",
    "vp_betas",
    "rescale_zero_terminal_snr",
    "VPSchedule",
    "LogNormalSigmas",
    "DiscreteVPSigmas",
    "karras",
    "exponential",
    "logsnr_uniform",
    "polyexponential",
    "vp_timesteps",
    "GRIDS",
    "make_grid",
]


# --- conversions ----------------------------------------------------------------------------------
def sigma_to_alpha_bar(sigma: Tensor) -> Tensor:
    return 1.0 / (1.0 + sigma**2)


def alpha_bar_to_sigma(alpha_bar: Tensor) -> Tensor:
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def sigma_to_logsnr(sigma: Tensor) -> Tensor:
    return -2.0 * torch.log(sigma)


def logsnr_to_sigma(logsnr: Tensor) -> Tensor:
    return torch.exp(-0.5 * logsnr)


# --- discrete VP schedules ------------------------------------------------------------------------
def vp_betas(
    kind: str = "linear", num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """β_t of a discrete VP ("DDPM") schedule, float64.

    linear: Ho et al. 2020;  scaled_linear: Stable Diffusion (linear in sqrt β; pass 0.00085, 0.012);
    cosine: Nichol & Dhariwal 2021, Eq. 17 (s = 0.008, β clipped at 0.999).
    """
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    if kind == "cosine":
        s = 0.008
        t = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; choose one of 'linear', 'scaled_linear', 'cosine'")


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


# --- sampling grids -------------------------------------------------------------------------------
def _check_range(n: int, sigma_min: float, sigma_max: float) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"number of steps must be a positive integer, got {n!r}")
    if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(
            f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}"
        )


def _append_zero(s: Tensor) -> Tensor:
    return torch.cat([s.to(torch.float64), s.new_zeros(1, dtype=torch.float64)])


def karras(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> Tensor:
    """EDM Eq. 5: σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, then 0."""
    _check_range(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> Tensor:
    """Uniform in log σ (k-diffusion's exponential grid)."""
    _check_range(n, sigma_min, sigma_max)
    if n == 1:
        return _append_zero(torch.tensor([sigma_max], dtype=torch.float64))
    return _append_zero(
        torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    )


def logsnr_uniform(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> Tensor:
    """Uniform in λ = −2 log σ (DPM-Solver's 'logSNR' spacing). In σ-space this is the same set of points as
    `exponential`; both names exist because users know both."""
    _check_range(n, sigma_min, sigma_max)
    lam = torch.linspace(-2 * math.log(sigma_max), -2 * math.log(sigma_min), max(n, 2), dtype=torch.float64)
    return _append_zero(logsnr_to_sigma(lam)[:n])


def polyexponential(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 1.0) -> Tensor:
    """k-diffusion's polyexponential: log σ interpolated with a ramp raised to ρ (ρ = 1: exponential)."""
    _check_range(n, sigma_min, sigma_max)
    ramp = (
        torch.linspace(1, 0, n, dtype=torch.float64) ** rho if n > 1 else torch.ones(1, dtype=torch.float64)
    )
    return _append_zero((ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)).exp())


def vp_timesteps(n: int, schedule: VPSchedule, spacing: str = "trailing", steps_offset: int = 0) -> Tensor:
    """σ at discrete VP timesteps chosen as diffusers does (Lin et al. 2023, Table 2), then 0.

    leading: t = k·(T//n) + offset;  trailing: t = round(T − k·T/n) − 1;
    linspace: round(linspace(0, T−1, n)).
    """
    T = schedule.num_timesteps
    if int(n) != n or not 1 <= n <= T:
        raise ValueError(f"number of steps must be in [1, {T}], got {n!r}")
    if spacing == "leading":
        t = np.arange(0, n) * (T // n) + steps_offset
    elif spacing == "trailing":
        t = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    elif spacing == "linspace":
        t = np.linspace(0, T - 1, n).round().astype(np.int64)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose 'leading', 'trailing' or 'linspace'")
    t = np.sort(np.clip(t, 0, T - 1))[::-1].copy()
    return _append_zero(schedule.sigmas[torch.from_numpy(t)])


GRIDS = {
    "karras": karras,
    "exponential": exponential,
    "logsnr": logsnr_uniform,
    "polyexponential": polyexponential,
}


def make_grid(name: str, n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, **kw) -> Tensor:
    """A named σ grid of n steps ending in 0 (see GRIDS; the 'rill' grid lives in rill.grids)."""
    if name == "rill":
        from .grids import rill_grid

        return rill_grid(n, sigma_min, sigma_max, **kw)
    if name not in GRIDS:
        raise ValueError(f"unknown σ grid {name!r}; choose one of {sorted([*GRIDS, 'rill'])}")
    return GRIDS[name](n, sigma_min, sigma_max, **kw)
