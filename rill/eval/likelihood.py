"""Exact likelihoods through the probability-flow ODE, and bits/dim for images.

Instantaneous change of variables along the PF-ODE (Song et al. 2021, "Score-Based Generative Modeling through
SDEs", App. D.2, Eq. 39):   log p_0(x(0)) = log p_T(x(T)) + ∫_0^T ∇·f̃(x(t), t) dt.
In rill's σ-space with σ(t) = t the drift is f̃ = dx/dσ = (x − D(x; σ)) / σ (EDM Eq. 3). We integrate in
u = log σ, where the drift is dx/du = x − D(x; σ) and its divergence is d − tr ∂D/∂x (well scaled at every σ):

    log p_σmin(x) = log N(x(σ_max); 0, σ_max² I) + ∫_{log σ_min}^{log σ_max} (d − tr ∂D/∂x) du.

What is computed is log p_σmin (the data blurred by σ_min, 0.002 by default), not log p_0; the prior
p_σmax ≈ N(0, σ_max² I) is exact up to the data's spread / σ_max. tr ∂D/∂x is exact (d backward passes, for
small d) or Hutchinson's estimate εᵀ J ε with fixed Rademacher or Gaussian probes (Hutchinson 1989; as in
FFJORD, Grathwohl et al. 2019). The ODE runs with scipy's RK45 (adaptive) or a fixed-step Heun in log σ.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..core.checks import check_choice, check_int, check_positive_int
from ..core.sigma import SIGMA_MAX, SIGMA_MIN, check_sigma_range
from ..core.tensors import sigma_batch

__all__ = ["log_likelihood", "bits_per_dim", "dequantize"]

_TRACES = ("auto", "exact", "hutchinson")
_NOISES = ("rademacher", "gaussian")
_METHODS = ("rk45", "heun")


def _probes(shape: tuple[int, ...], num: int, noise: str, generator: torch.Generator | None) -> Tensor:
    z = torch.randn((num, *shape), generator=generator, dtype=torch.float64)
    return z.sign() if noise == "rademacher" else z  # sign of a Gaussian is Rademacher ±1


class _Drift:
    """dx/du = x − D(x; e^u) and the divergence d − tr ∂D/∂x, for a batch flattened to (B, d)."""

    def __init__(
        self,
        denoiser,
        shape: tuple[int, ...],
        cond,
        trace: str,
        probes: Tensor | None,
        dtype: torch.dtype,
        device: torch.device,
    ):
        self.denoiser, self.shape, self.cond, self.trace = denoiser, shape, cond, trace
        self.probes, self.dtype, self.device = probes, dtype, device
        self.nfe = 0

    def __call__(self, u: float, xf: Tensor) -> tuple[Tensor, Tensor]:
        self.nfe += 1
        b, d = xf.shape
        with torch.enable_grad():
            x = xf.to(self.device, self.dtype).reshape(b, *self.shape).requires_grad_(True)
            den = self.denoiser(x, sigma_batch(math.exp(u), x), self.cond)
            if not den.requires_grad:  # a denoiser that ignores x: its Jacobian is zero
                tr = torch.zeros(b, dtype=torch.float64, device=self.device)
            elif self.trace == "exact":
                tr = torch.zeros(b, dtype=torch.float64, device=self.device)
                flat = den.reshape(b, d)
                for i in range(d):  # row i of each sample's Jacobian; samples are independent of each other
                    (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < d - 1)
                    tr += g.reshape(b, d)[:, i].double()
            else:
                tr = torch.zeros(b, dtype=torch.float64, device=self.device)
                p = self.probes.shape[0]
                for j in range(
                    p
                ):  # Hutchinson: E[εᵀ J ε] = tr J;  εᵀ J ε = ε · (Jᵀ ε) from one vector-Jacobian product
                    eps = self.probes[j].to(self.device, self.dtype)
                    (g,) = torch.autograd.grad((den * eps).sum(), x, retain_graph=j < p - 1)
                    tr += (g * eps).reshape(b, d).sum(1).double()
                tr /= p
        drift = (x - den).detach().reshape(b, d).double()
        return drift, d - tr.detach()


def log_likelihood(
    denoiser,
    x: Tensor,
    *,
    cond: dict[str, Tensor] | None = None,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    method: str = "rk45",
    steps: int = 64,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    trace: str = "auto",
    probes: int = 1,
    noise: str = "rademacher",
    generator: torch.Generator | None = None,
    log_prior: Callable[[Tensor], Tensor] | None = None,
    return_nfe: bool = False,
) -> Tensor | tuple[Tensor, int]:
    """log p_σmin(x) in nats, one value per sample (float64, shape (B,)); see the module docstring.

    x: (B, ...) points in the denoiser's VE coordinates; computed in x's dtype (float64 for exact toys).
    method: "rk45" (scipy.integrate.solve_ivp, adaptive, rtol / atol) or "heun" (`steps` fixed steps in
        log σ).
    trace: "exact" (d backward passes per evaluation), "hutchinson" (`probes` vector-Jacobian products with
        fixed `noise` probes), or "auto" = exact for d <= 32, else Hutchinson.
    log_prior: log p_σmax of the end points, (B, ...) float64 -> (B,); default log N(0, σ_max² I). Pass the
        exact one (e.g. `lambda y: mixture.log_prob(y, sigma_max)`) to remove the prior's approximation error,
        about |E x0| / σ_max nats.
    """
    check_choice("method", method, _METHODS)
    check_choice("trace", trace, _TRACES)
    check_choice("noise", noise, _NOISES)
    sigma_min, sigma_max = check_sigma_range(sigma_min, sigma_max)
    check_positive_int("probes", probes)
    check_positive_int("steps", steps)
    if not x.is_floating_point() or x.ndim < 2:
        raise ValueError(
            f"x must be a floating-point (B, ...) batch, got {x.dtype} of shape {tuple(x.shape)}"
        )
    b, shape = x.shape[0], tuple(x.shape[1:])
    d = math.prod(shape)
    if trace == "auto":
        trace = "exact" if d <= 32 else "hutchinson"
    eps = _probes((b, *shape), int(probes), noise, generator) if trace == "hutchinson" else None
    f = _Drift(denoiser, shape, cond, trace, eps, x.dtype, x.device)
    u0, u1 = math.log(sigma_min), math.log(sigma_max)
    x0 = x.detach().reshape(b, d).double().cpu()

    if method == "heun":
        xs, delta, h = x0, torch.zeros(b, dtype=torch.float64), (u1 - u0) / steps
        for i in range(steps):
            u = u0 + i * h
            # Heun's method (explicit trapezoidal rule) on the joint ODE for (x, ∫ ∇·f du)
            dx1, dl1 = f(u, xs)
            dx2, dl2 = f(u + h, xs + h * dx1.cpu())
            xs = xs + 0.5 * h * (dx1 + dx2).cpu()
            delta = delta + 0.5 * h * (dl1 + dl2).cpu()
        x_end = xs
    else:
        try:
            from scipy.integrate import solve_ivp
        except ImportError as e:  # pragma: no cover - scipy is a dev / all extra
            raise ImportError("method='rk45' needs scipy (pip install scipy); or use method='heun'") from e

        def rhs(u: float, state: np.ndarray) -> np.ndarray:
            dx, dl = f(u, torch.from_numpy(state[: b * d]).reshape(b, d))
            return np.concatenate([dx.cpu().numpy().ravel(), dl.cpu().numpy()])

        start = np.concatenate([x0.numpy().ravel(), np.zeros(b)])
        sol = solve_ivp(rhs, (u0, u1), start, method="RK45", rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"probability-flow ODE solve failed: {sol.message}")
        end = torch.from_numpy(sol.y[:, -1])
        x_end, delta = end[: b * d].reshape(b, d), end[b * d :]
    if log_prior is not None:
        prior = log_prior(x_end.reshape(b, *shape)).to(torch.float64).cpu().reshape(b)
    else:  # log N(x(σ_max); 0, σ_max² I)
        prior = (
            -0.5 * (x_end**2).sum(1) / sigma_max**2
            - d * math.log(sigma_max)
            - 0.5 * d * math.log(2 * math.pi)
        )
    logp = prior + delta
    return (logp, f.nfe) if return_nfe else logp


def dequantize(images: Tensor, levels: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation (Theis et al. 2016) of images with `levels` grey levels mapped onto [-1, 1]
    (x = 2k/(levels − 1) − 1): add U(−Δ/2, Δ/2) noise, Δ = 2/(levels − 1) the bin width."""
    check_int("levels (256 for 8-bit images)", levels, 2)
    delta = 2.0 / (levels - 1)
    u = torch.rand(images.shape, generator=generator, dtype=torch.float64) - 0.5
    return images + (u * delta).to(images.dtype).to(images.device)


def bits_per_dim(
    denoiser,
    images: Tensor,
    *,
    levels: int = 256,
    cond: dict[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    **ode_options,
) -> dict[str, Tensor]:
    """Negative log-likelihood of discrete images in bits per dimension (an upper bound, as in the papers).

    Convention: pixel k ∈ {0, …, levels−1} sits at x = 2k/(levels − 1) − 1 in [-1, 1] and owns the bin
    [x − Δ/2, x + Δ/2), Δ = 2/(levels − 1) (for 8-bit: Δ = 1/127.5). With uniform dequantisation,
        −log P(k) ≤ E_u[−log p(x + u)] − d·log Δ,   so   bits/dim = (−log p(x̃)/d + log(1/Δ)) / ln 2,
    i.e. add log(127.5) nats per dimension for 8-bit images before converting to bits. The density is the
    model's log p_σmin (see `log_likelihood`).
    Returns {"bpd": (B,), "nll_nats": (B,) = −log p(x̃), "nfe": ...}.
    """
    x_tilde = dequantize(images, levels, generator)
    logp, nfe = log_likelihood(
        denoiser, x_tilde, cond=cond, generator=generator, return_nfe=True, **ode_options
    )
    d = math.prod(images.shape[1:])
    bpd = (-logp / d + math.log((levels - 1) / 2.0)) / math.log(2.0)
    return {"bpd": bpd, "nll_nats": -logp, "nfe": torch.tensor(nfe)}
