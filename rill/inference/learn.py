"""Learn a few-step solver for one model: the σ grid and the lms weights (rill.samplers.lms) jointly, by
gradient descent on the endpoint error against a converged solution of the same ODE from the same noise.

    sigmas, weights, err = fit_lms(denoiser, z, ref, sigmas0, weights0, sigma_min)

The grid keeps σ_0 = σ_max (the same ODE) and is parametrised so that it stays a valid grid at every step:
normalised log σ knots u_k = u_end·Σ_{m≤k} softmax(θ)_m for k = 1 … n−1 (increasing, u_{n−1} = u_end ∈ (0, 1],
so σ_{n−1} ≥ σ_min), then 0. Each weight row is its start value plus a learned offset with its mean removed,
so it keeps summing to 1 (lms consistency). The gradient runs through the network at every step, the input
and σ both (LD3, Tong et al. 2025, learns the grid this way; S4S, Frankel et al. 2025, the coefficients).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..samplers.lms import lms_step_input

__all__ = ["fit_lms", "run_lms", "clip_aware_error"]


def _knots(sigmas: Tensor, sigma_min: float) -> tuple[Tensor, Tensor]:
    """(θ, φ) that reproduce the grid sigmas = (σ_max, σ_1, …, σ_{n−1}, 0)."""
    s = sigmas.to(torch.float64)
    hi, span = float(s[0]), math.log(float(s[0]) / sigma_min)
    u = torch.log(hi / s[1:-1]) / span  # u_1 … u_{n−1}
    u_end = float(u[-1].clamp(1e-6, 1 - 1e-6))
    inc = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), u])) / float(u[-1])
    return torch.log(inc.clamp_min(1e-9)), torch.tensor(math.log(u_end / (1 - u_end)), dtype=torch.float64)


def _grid(theta: Tensor, phi: Tensor, hi: float, sigma_min: float) -> Tensor:
    u = torch.sigmoid(phi) * torch.cumsum(torch.softmax(theta, 0), 0)
    inner = hi * torch.exp(-u * math.log(hi / sigma_min))
    one = torch.ones(1, dtype=inner.dtype)
    return torch.cat([one * hi, inner, one * 0])


def _rows(weights0: list[Tensor], offsets: list[Tensor]) -> list[Tensor]:
    return [w + d - d.mean() for w, d in zip(weights0, offsets)]


def clip_aware_error(x: Tensor, ref: Tensor) -> Tensor:
    """x − clamp(ref), zero where the reference sits on a bound of [-1, 1] and x lies beyond it: the measure
    (RMS of clamped images) with a gradient wherever it can change."""
    r = ref.clamp(-1, 1)
    d = x - r
    return torch.where(((r >= 1) & (d > 0)) | ((r <= -1) & (d < 0)), torch.zeros_like(d), d)


def run_lms(denoiser, z: Tensor, sigmas: Tensor, rows: list[Tensor], cond=None) -> Tensor:
    """The lms sampler from unit noise z, differentiable in sigmas and rows (tensors)."""
    x0 = z * sigmas[0].to(z.dtype)
    x, outputs = x0, []
    for i in range(len(rows)):
        sig = sigmas[i].to(z.dtype).expand(z.shape[0])
        outputs.append(denoiser(x, sig, cond))
        ratio = (sigmas[i + 1] / sigmas[0]).to(z.dtype)
        x = lms_step_input(x0, ratio, [w.to(z.dtype) for w in rows[i]], outputs)
    return x


def fit_lms(
    denoiser,
    z: Tensor,
    ref: Tensor,
    sigmas: Tensor,
    weights: list[list[float]],
    sigma_min: float,
    *,
    steps: int = 120,
    lr: float = 0.02,
    batch: int | None = None,
    cond=None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[float], list[list[float]], float]:
    """(grid, weight rows, final training RMS) fitted from (sigmas, weights): see the module docstring.

    z: unit noise (B, ...); ref: the converged endpoints from σ_max·z; steps of Adam at learning rate lr on
    minibatches of `batch` samples (None: all). The parameters with the lowest full-set error are returned."""
    hi = float(sigmas[0])
    theta, phi = _knots(sigmas, sigma_min)
    theta, phi = theta.clone().requires_grad_(True), phi.clone().requires_grad_(True)
    w0 = [torch.tensor(r, dtype=torch.float64) for r in weights]
    offsets = [torch.zeros_like(w, requires_grad=True) for w in w0]
    opt = torch.optim.Adam([theta, phi, *offsets], lr=lr)
    b = z.shape[0] if batch is None else min(batch, z.shape[0])
    gen = torch.Generator().manual_seed(0)

    def full_error() -> float:
        with torch.no_grad():
            x = run_lms(denoiser, z, _grid(theta, phi, hi, sigma_min), _rows(w0, offsets), cond)
            return float(((x.clamp(-1, 1) - ref.clamp(-1, 1)) ** 2).mean().sqrt())

    best = (full_error(), theta.detach().clone(), phi.detach().clone(), [d.detach().clone() for d in offsets])
    say = log or (lambda text: None)
    say(f"fit_lms: start RMS {best[0]:.4f}")
    for step in range(steps):
        idx = torch.randperm(z.shape[0], generator=gen)[:b]
        c = None if cond is None else {k: v[idx] for k, v in cond.items()}
        x = run_lms(denoiser, z[idx], _grid(theta, phi, hi, sigma_min), _rows(w0, offsets), c)
        loss = (clip_aware_error(x, ref[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 20 == 0 or step + 1 == steps:
            err = full_error()
            say(f"fit_lms: step {step + 1}: RMS {err:.4f}")
            if err < best[0]:
                best = (
                    err,
                    theta.detach().clone(),
                    phi.detach().clone(),
                    [d.detach().clone() for d in offsets],
                )
    err, theta, phi, offsets = best
    grid = _grid(theta, phi, hi, sigma_min).tolist()
    rows = [r.tolist() for r in _rows(w0, offsets)]
    return grid, rows, err
