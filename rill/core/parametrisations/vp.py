"""Networks trained on a discrete VP ("DDPM") schedule, seen through the σ contract, with their losses.

x_vp = sqrt(ᾱ)·x = x / sqrt(1 + σ²);  t = schedule.sigma_to_t(σ) (fractional, log-σ interpolation);
the three prediction types (one name each: PREDICTIONS) give x0 as
    epsilon:  x0 = x − σ·ε                               (x = x0 + σ·ε; Ho et al. 2020)
    v:        x0 = sqrt(ᾱ)·x_vp − sqrt(1 − ᾱ)·v          (Salimans & Ho 2022, Sec. 4)
    x0:       x0 = the network's output
Losses: the MSE to ε, v or x0 at t ~ U{0, …, T−1}, optionally weighted by min-SNR-γ (Hang et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..denoiser import Cond
from ..schedules import VPSchedule
from ..tensors import append_dims, sigma_batch
from .base import ParamSettings, mean_per_sample, register

__all__ = ["PREDICTIONS", "VPAdapter", "VPPrecond", "EpsilonPrecond", "VPredictionPrecond", "X0Precond",
           "min_snr_weight", "vp_loss", "MIN_SNR_WEIGHTS"]  # fmt: skip

PREDICTIONS = ("epsilon", "v", "x0")

# min-SNR-γ (Hang et al. 2023, Sec. 3.4), as (min(SNR, γ), SNR) -> weight: the ε-loss is the x0-loss ×
# 1/SNR and the v-loss the x0-loss × 1/(SNR + 1), so the clipped x0 weight min(SNR, γ) is divided by those
MIN_SNR_WEIGHTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "epsilon": lambda clipped, snr: clipped / snr,
    "v": lambda clipped, snr: clipped / (snr + 1),
    "x0": lambda clipped, snr: clipped,
}


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {prediction!r}; choose one of {PREDICTIONS}")


class VPAdapter(nn.Module):
    """Wrap model(x_vp, t, cond) trained on a discrete VP schedule into the σ contract (module docstring).

    `discrete_t=True` rounds t to the nearest integer timestep (for models that only accept integers).
    """

    def __init__(
        self, model: Callable, schedule: VPSchedule, prediction: str = "epsilon", discrete_t: bool = False
    ):
        super().__init__()
        _check_prediction(prediction)
        self.model, self.schedule, self.prediction, self.discrete_t = model, schedule, prediction, discrete_t

    def forward(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        sigma = sigma_batch(sigma, x)
        s = append_dims(sigma, x.ndim)
        alpha = 1 / (1 + s**2).sqrt()  # sqrt(ᾱ)
        x_vp = x * alpha
        t = self.schedule.sigma_to_t(sigma)
        if self.discrete_t:
            t = t.round()
        out = self.model(x_vp, t, cond).to(x.dtype)
        if self.prediction == "epsilon":
            return x - s * out
        if self.prediction == "v":
            return alpha * x_vp - (s * alpha) * out  # sqrt(1 − ᾱ) = σ·sqrt(ᾱ)
        return out


def min_snr_weight(snr: Tensor, gamma: float | None, prediction: str) -> Tensor:
    """min-SNR-γ weight (Hang et al. 2023, Sec. 3.4): see MIN_SNR_WEIGHTS.

    gamma None → all ones (the plain unweighted ε / v MSE of Ho et al. 2020 / Salimans & Ho 2022).
    """
    _check_prediction(prediction)
    if gamma is None:
        return torch.ones_like(snr)
    return MIN_SNR_WEIGHTS[prediction](snr.clamp(max=gamma), snr)


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
    """ε-, v- or x0-prediction loss per sample on a discrete VP schedule, t ~ U{0, …, T−1}.

    net(x_t, t, cond) sees the VP sample x_t and the integer timestep t (as a float tensor (B,)).
    """
    _check_prediction(prediction)
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
    target = {"epsilon": noise, "v": a * noise - s * x0, "x0": x0}[prediction]
    out = net(x_t, t.to(device=x0.device, dtype=x0.dtype), cond)
    snr = ac / (1 - ac)  # SNR(t) = ᾱ / (1 − ᾱ) = 1/σ²
    # Ho et al. 2020, Eq. 14 (ε) / Salimans & Ho 2022 (v), weighted by min-SNR-γ (Hang et al. 2023)
    return min_snr_weight(snr.float(), min_snr_gamma, prediction) * mean_per_sample(
        (out.float() - target.float()) ** 2
    )


class VPPrecond(VPAdapter):
    """A rill backbone net(x_in, c_noise, cond) trained on a discrete VP schedule: c_noise = t / T (the
    backbones' Fourier features are tuned for inputs of order one). Subclasses fix the prediction type."""

    prediction_type = "epsilon"

    def __init__(self, net: nn.Module, schedule: VPSchedule):
        super().__init__(self.vp_net, schedule, self.prediction_type)
        self.net = net

    def vp_net(self, x_vp: Tensor, t: Tensor, cond: Cond = None) -> Tensor:
        """The raw network on the VP schedule: c_noise = t / T."""
        return self.net(x_vp, t / self.schedule.num_timesteps, cond)

    @classmethod
    def build(cls, net: nn.Module, settings: ParamSettings) -> VPPrecond:
        return cls(net, VPSchedule.make(settings.vp_schedule, settings.vp_timesteps))

    @staticmethod
    def sigma_range(settings: ParamSettings) -> tuple[float, float]:
        s = VPSchedule.make(settings.vp_schedule, settings.vp_timesteps).sigmas
        return float(s[0]), float(s[-1])

    def loss(
        self,
        x0: Tensor,
        cond: Cond = None,
        *,
        generator: torch.Generator | None = None,
        min_snr_gamma: float | None = None,
        **_other_objectives,
    ) -> Tensor:
        """Per-sample loss (B,) of this prediction type; EDM's options (p_mean, p_std) do not apply here."""
        return vp_loss(
            self.vp_net, self.schedule, x0, cond, prediction=self.prediction, min_snr_gamma=min_snr_gamma,
            generator=generator,
        )  # fmt: skip


@register("epsilon")
class EpsilonPrecond(VPPrecond):
    prediction_type = "epsilon"


@register("v")
class VPredictionPrecond(VPPrecond):
    prediction_type = "v"


@register("x0")
class X0Precond(VPPrecond):
    prediction_type = "x0"
