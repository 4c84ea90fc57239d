"""EDM preconditioning and its loss (Karras et al. 2022, "EDM", Eq. 7, 8 and Table 1).

D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ)),   loss λ(σ)·‖D(x0 + σn; σ) − x0‖²,
ln σ ~ N(P_mean, P_std²),  λ(σ) = 1 / c_out².
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..denoiser import Cond
from ..schedules import LogNormalSigmas
from ..sigma import SIGMA_MAX, SIGMA_MIN
from ..tensors import append_dims, sigma_batch
from .base import ParamSettings, mean_per_sample, register

__all__ = ["EDMPrecond", "edm_weight", "edm_loss"]

_EDM_SIGMAS = LogNormalSigmas()  # P_mean = −1.2, P_std = 1.2 (EDM Table 1)


def edm_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)² = 1 / c_out²  (EDM Eq. 8 / Table 1)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(
    denoiser,
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
    return edm_weight(sigma, sigma_data) * mean_per_sample((d.float() - x0.float()) ** 2)


@register("edm")
class EDMPrecond(nn.Module):
    """D(x; σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))   (EDM Eq. 7, Table 1).

    dtype policy: the four coefficients are computed in float32 (float64 if x is float64); the network runs in
    its own dtype (or under autocast); the output is returned in x's dtype.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    @classmethod
    def build(cls, net: nn.Module, settings: ParamSettings) -> EDMPrecond:
        return cls(net, settings.sigma_data)

    @staticmethod
    def sigma_range(settings: ParamSettings) -> tuple[float, float]:
        return SIGMA_MIN, SIGMA_MAX

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        sigma = sigma_batch(sigma, x).to(work)
        c_skip, c_out, c_in, c_noise = (append_dims(c, x.ndim) for c in self.coefficients(sigma))
        net_dtype = next(self.net.parameters()).dtype
        f = self.net((c_in * x.to(work)).to(net_dtype), c_noise.flatten(), cond)
        return (c_skip * x.to(work) + c_out * f.to(work)).to(x.dtype)

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """λ(σ) = 1 / c_out² so the effective target of F has unit variance (EDM Eq. 8, Table 1)."""
        return edm_weight(sigma, self.sigma_data)

    def loss(
        self,
        x0: Tensor,
        cond: Cond = None,
        *,
        generator: torch.Generator | None = None,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        **_other_objectives,
    ) -> Tensor:
        """Per-sample EDM loss (B,); options of other objectives (min_snr_gamma) do not apply here."""
        return edm_loss(
            self, x0, cond, sigma_data=self.sigma_data, distribution=LogNormalSigmas(p_mean, p_std),
            generator=generator,
        )  # fmt: skip
