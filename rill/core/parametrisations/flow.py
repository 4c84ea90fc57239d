"""Flow matching / rectified flow seen through the σ contract (Lipman et al. 2023; Liu et al. 2023; Esser et
al. 2024, "SD3").

    x_t = (1 − t)·x0 + t·ε,   the net predicts v = ε − x0   (rectified flow: dx_t/dt = v)
    σ = t / (1 − t),  t = σ / (1 + σ),  x_VE = x_t / (1 − t) = x0 + σ·ε,  so x_t = x / (1 + σ)
    D(x; σ) = x_t − t·v                                     (exact when v = E[ε − x0 | x_t])

In EDM's terms: c_in = 1/(1 + σ), c_skip = 1/(1 + σ), c_out = −σ/(1 + σ), c_noise = ln(σ)/4 = logit(t)/4.
Training: ‖v_θ(x_t, t) − (ε − x0)‖² with t ~ logit-normal(m, s) (SD3, Sec. 3.1), i.e. ln σ ~ N(m, s²), the
same log-normal family EDM draws σ from. The resolution shift (SD3, Sec. 5.3.2) t' = s·t / (1 + (s − 1)·t) is
σ' = s·σ in this view: it moves the training distribution (ln σ ~ N(m + ln s, s²)) and the sampling range.
Why these choices: docs/emoji-dit-flow.md.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..denoiser import Cond
from ..schedules import LogNormalSigmas
from ..sigma import SIGMA_MAX, SIGMA_MIN
from ..tensors import append_dims, sigma_batch
from .base import ParamSettings, mean_per_sample, register

__all__ = ["FlowPrecond", "sigma_to_t", "t_to_sigma", "flow_loss"]

_LOGIT_NORMAL = LogNormalSigmas(0.0, 1.0)  # t ~ logit-normal(0, 1) ⇔ ln σ ~ N(0, 1) (SD3, Sec. 3.1)


def sigma_to_t(sigma: Tensor) -> Tensor:
    """t = σ / (1 + σ): the rectified-flow time of VE noise level σ (t → 1 as σ → ∞)."""
    return sigma / (1 + sigma)


def t_to_sigma(t: Tensor) -> Tensor:
    """σ = t / (1 − t): the VE noise level of flow time t."""
    return t / (1 - t)


def flow_loss(
    velocity,
    x0: Tensor,
    cond: Cond = None,
    *,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    distribution: LogNormalSigmas = _LOGIT_NORMAL,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Conditional flow matching loss per sample: mean‖v_θ(x_t, t) − (ε − x0)‖²  (Lipman et al. 2023, Eq. 23;
    Liu et al. 2023, Eq. 1), t = σ/(1 + σ) with ln σ ~ N(m, s²) (logit-normal t, SD3 Eq. 19).

    `velocity(x_t, sigma, cond)` is the network's v; `sigma` (B,) and `noise` may be given (tests, resume).
    """
    if sigma is None:
        sigma = distribution.sample(x0.shape[0], generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    sigma = sigma.to(device=x0.device, dtype=x0.dtype)
    t = append_dims(sigma_to_t(sigma), x0.ndim)
    # Rectified flow: the straight path x_t = (1 − t)·x0 + t·ε and its velocity v = ε − x0
    x_t = (1 - t) * x0 + t * noise
    v = velocity(x_t, sigma, cond)
    return mean_per_sample((v.float() - (noise - x0).float()) ** 2)


@register("flow")
class FlowPrecond(nn.Module):
    """D(x; σ) = x_t − t·v_θ(x_t, c_noise),  x_t = x / (1 + σ),  t = σ / (1 + σ)  (module docstring).

    dtype policy as EDMPrecond: the coefficients in float32 (float64 if x is), the net in its own dtype.
    """

    def __init__(self, net: nn.Module, shift: float = 1.0):
        super().__init__()
        self.net = net
        self.shift = float(shift)

    @classmethod
    def build(cls, net: nn.Module, settings: ParamSettings) -> FlowPrecond:
        return cls(net, settings.flow_shift)

    @staticmethod
    def sigma_range(settings: ParamSettings) -> tuple[float, float]:
        """EDM's range (t from 0.002 to 0.988) moved by the shift: σ' = s·σ."""
        return SIGMA_MIN * settings.flow_shift, SIGMA_MAX * settings.flow_shift

    @staticmethod
    def coefficients(sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c_in = 1 / (1 + sigma)  # x_t = x / (1 + σ)
        c_skip = 1 / (1 + sigma)
        c_out = -sigma / (1 + sigma)  # −t
        c_noise = sigma.log() / 4  # logit(t) / 4, the same numbers the EDM net sees
        return c_skip, c_out, c_in, c_noise

    def velocity(self, x_t: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        """The network's v at flow sample x_t (B, ...) and noise level σ (B,), returned in float32/64."""
        work = torch.float64 if x_t.dtype == torch.float64 else torch.float32
        net_dtype = next(self.net.parameters()).dtype
        c_noise = self.coefficients(sigma.to(work))[3].flatten()
        return self.net(x_t.to(net_dtype), c_noise, cond).to(work)

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        sigma = sigma_batch(sigma, x).to(work)
        c_skip, c_out, c_in, _ = (append_dims(c, x.ndim) for c in self.coefficients(sigma))
        x_w = x.to(work)
        v = self.velocity(c_in * x_w, sigma, cond)
        return (c_skip * x_w + c_out * v).to(x.dtype)

    def loss(
        self,
        x0: Tensor,
        cond: Cond = None,
        *,
        generator: torch.Generator | None = None,
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        **_other_objectives,
    ) -> Tensor:
        """Per-sample flow matching loss (B,), t ~ logit-normal(logit_mean, logit_std), shifted (σ' = s·σ).

        EDM's p_mean / p_std and min_snr_gamma belong to other objectives and are ignored here."""
        dist = LogNormalSigmas(logit_mean + math.log(self.shift), logit_std)
        return flow_loss(self.velocity, x0, cond, distribution=dist, generator=generator)
