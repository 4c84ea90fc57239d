"""An exact Gaussian mixture: the one model whose denoiser, score and noised density are known in closed form.

p0(x0) = Σ_k w_k N(x0; μ_k, diag(s_k²)).  Adding σ-noise gives
p_σ(x) = Σ_k w_k N(x; μ_k, diag(s_k² + σ²)), and
by Tweedie / Gaussian conditioning the exact denoiser is
    D(x; σ) = Σ_k r_k(x) [μ_k + s_k² / (s_k² + σ²) · (x − μ_k)],   r_k(x) ∝ w_k N(x; μ_k, s_k² + σ²).
Used by tests (exact answers), benchmarks (exact PF-ODE references) and the 2D pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .tensors import sigma_batch


@dataclass
class GaussianMixture:
    means: Tensor  # (K, d)
    stds: Tensor  # (K, d) per-dimension standard deviations (diagonal covariances)
    weights: Tensor  # (K,) summing to 1
    event_shape: tuple[int, ...] | None = None  # shape of one sample; default (d,)

    def __post_init__(self):
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        k, d = self.means.shape
        self.stds = torch.as_tensor(self.stds, dtype=torch.float64).expand(k, d).clone()
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        if self.weights.shape != (k,) or (self.weights < 0).any():
            raise ValueError(
                f"weights must be {k} non-negative numbers, got shape {tuple(self.weights.shape)}"
            )
        if (self.stds < 0).any():
            raise ValueError("stds must be non-negative")
        self.weights = self.weights / self.weights.sum()
        self.event_shape = tuple(self.event_shape or (d,))
        if math.prod(self.event_shape) != d:
            raise ValueError(f"event_shape {self.event_shape} does not hold {d} values")

    @classmethod
    def random(
        cls,
        dim: int,
        components: int,
        std_range: tuple[float, float] = (0.03, 0.25),
        seed: int = 0,
        scale: float = 1.0,
        event_shape: tuple[int, ...] | None = None,
    ) -> GaussianMixture:
        """A random mixture: means ~ N(0, (scale/2)² I), per-dimension stds drawn around std_range."""
        g = torch.Generator().manual_seed(seed)
        means = torch.randn(components, dim, generator=g, dtype=torch.float64) * scale * 0.5
        lo, hi = std_range
        stds = lo + (hi - lo) * torch.rand(components, 1, generator=g, dtype=torch.float64)
        stds = stds * (0.75 + 0.5 * torch.rand(components, dim, generator=g, dtype=torch.float64))
        weights = 0.5 + torch.rand(components, generator=g, dtype=torch.float64)
        return cls(means, stds.clamp(min=lo * 0.5), weights, event_shape)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _flat(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"expected samples of shape (B, {', '.join(map(str, self.event_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], -1).to(torch.float64)

    def _log_resp(self, xf: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Per-component log w_k N(x; μ_k, s_k² + σ²) (B, K) and the variances (B, K, d)."""
        var = self.stds[None] ** 2 + sigma.to(torch.float64)[:, None, None] ** 2  # (B, K, d)
        diff = xf[:, None, :] - self.means[None]  # (B, K, d)
        logp = -0.5 * ((diff**2 / var) + var.log() + math.log(2 * math.pi)).sum(-1)
        return logp + self.weights.log()[None], var

    def denoise(self, x: Tensor, sigma: Tensor | float, cond=None) -> Tensor:
        """The exact D(x; σ) = E[x0 | x] (module docstring). Computed in float64, returned in x's dtype."""
        sigma = sigma_batch(sigma, x)
        xf = self._flat(x)
        logp, var = self._log_resp(xf, sigma)
        r = torch.softmax(logp, dim=1)  # (B, K)
        post = self.means[None] + (self.stds[None] ** 2 / var) * (xf[:, None, :] - self.means[None])
        return (r[:, :, None] * post).sum(1).reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Exact log p_σ(x) of the noised marginal (natural log, per sample), float64."""
        sigma = sigma_batch(sigma, x).to(torch.float64)
        logp, _ = self._log_resp(self._flat(x), sigma)
        return torch.logsumexp(logp, dim=1)

    def score(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Exact ∇ log p_σ(x) = (D(x; σ) − x) / σ²."""
        s = sigma_batch(sigma, x).to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        return ((self.denoise(x.to(torch.float64), s.flatten()) - x.to(torch.float64)) / s**2).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None, sigma: float = 0.0) -> Tensor:
        """n samples from p_σ (σ = 0: the clean data), float64, shape (n, *event_shape)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        std = (self.stds[k] ** 2 + sigma**2).sqrt()
        return (self.means[k] + std * z).reshape(n, *self.event_shape)
