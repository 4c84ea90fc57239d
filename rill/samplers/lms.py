"""Linear multistep in closed form ("lms"): one denoiser call per step, every input a fixed blend of the start
and the past outputs. Fitted per model by `rill tune-sampler` (rill.inference.learn), where its grid and
weights are learned jointly, as LD3 learns the grid (Tong et al. 2025) and S4S a solver's coefficients
(Frankel et al. 2025).

Every deterministic one-call-per-step solver in rill (Euler, DDIM, DPM-Solver++ 2M/3M, UniPC, iPNDM) calls the
denoiser at points that are linear in the start x_0 and the outputs D_j = D(x_j; σ_j) so far. Written with
the exponential integrator's scaling, which is exact when D is constant (the large-σ limit),
    x_i = (σ_i/σ_0)·x_0 + (1 − σ_i/σ_0)·Σ_{j<i} w_ij·D_j,      Σ_j w_ij = 1,      i = 1 … n,
and x_n (σ_n = 0) is the sample. `weights` holds the rows w_1 … w_n (row i has i entries); `linear_weights`
reads them off any such solver on a given grid, so "lms" with those rows reproduces it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import Callback, Generator, check_inputs, denoise_step
from .registry import get_sampler, register

__all__ = ["sample_lms", "linear_weights", "check_weights", "lms_step_input"]


def lms_step_input(x0: Tensor, ratio, row: Sequence, outputs: Sequence[Tensor]) -> Tensor:
    """x_i = r·x_0 + (1 − r)·Σ_j w_ij·D_j with r = σ_i/σ_0 (floats or tensors, for the learner)."""
    blend = outputs[0] * row[0]
    for w, d in zip(row[1:], outputs[1:]):
        blend = blend + d * w
    return x0 * ratio + blend * (1 - ratio)


def check_weights(weights: Sequence[Sequence[float]], n: int) -> list[list[float]]:
    """The rows w_1 … w_n as floats, or a ValueError naming what is wrong."""
    rows = [[float(w) for w in row] for row in weights]
    if len(rows) != n:
        raise ValueError(
            f"lms: a grid of {n} steps needs {n} weight rows, got {len(rows)}; the weights belong "
            "to the grid they were fitted with (rill tune-sampler stores both)"
        )
    for i, row in enumerate(rows, start=1):
        if len(row) != i:
            raise ValueError(
                f"lms: weight row {i} must have {i} entries (one per past output), got {len(row)}"
            )
        if abs(sum(row) - 1.0) > 1e-6:
            raise ValueError(f"lms: weight row {i} must sum to 1 (consistency), sums to {sum(row):.6g}")
    return rows


@torch.no_grad()
def linear_weights(sampler: str, sigmas: Tensor, **options) -> list[list[float]]:
    """The rows w_1 … w_n of a deterministic one-call-per-step `sampler` on `sigmas` (module docstring).

    The sampler is run on coefficient vectors: x_0 is e_0 and the j-th call returns e_{j+1}, so every input it
    builds is its own coefficient row. A ValueError if the sampler is not of this form."""
    s = check_inputs(torch.zeros(1), sigmas)
    n = len(s) - 1
    inputs: list[Tensor] = []

    def basis(x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        if len(inputs) == n:
            raise ValueError(f"lms: {sampler!r} makes more than one call per step; only one-call-per-step "
                             "solvers can be written as lms weights")  # fmt: skip
        inputs.append(x[0].clone())
        out = torch.zeros_like(x)
        out[0, len(inputs)] = 1.0
        return out

    start = torch.zeros(1, n + 1, dtype=torch.float64)
    start[0, 0] = 1.0
    final = get_sampler(sampler)(basis, start, sigmas.to(torch.float64), **options)[0]
    if len(inputs) != n:
        raise ValueError(
            f"lms: {sampler!r} made {len(inputs)} calls on a {n}-step grid; only one-call-per-"
            "step solvers can be written as lms weights"
        )
    rows = []
    for i, coef in enumerate([*inputs[1:], final], start=1):
        ratio = s[i] / s[0]
        if abs(float(coef[0]) - ratio) > 1e-9 or bool((coef[i + 1 :].abs() > 1e-12).any()):
            raise ValueError(
                f"lms: {sampler!r} is not a linear multistep solver in data prediction "
                f"(input {i}: x_0 enters with {float(coef[0]):.6g}, σ_i/σ_0 = {ratio:.6g})"
            )
        rows.append((coef[1 : i + 1] / (1 - ratio)).tolist())
    return rows


@register(
    "lms",
    order=2,
    stochastic=False,
    description="linear multistep with per-model learned grid and weights (default: DPM-Solver++(2M)'s)",
)
def sample_lms(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback: Callback = None,
    weights: Sequence[Sequence[float]] | None = None,
) -> Tensor:
    """x_i = (σ_i/σ_0)·x_0 + (1 − σ_i/σ_0)·Σ_{j<i} w_ij·D_j (module docstring); n calls for an n-step grid.

    weights: rows w_1 … w_n for this grid (rill tune-sampler fits them); None = DPM-Solver++(2M)'s on the grid
        (Lu et al. 2022), so the sampler is usable, and second order, without a fit.
    """
    s = check_inputs(x, sigmas)
    n = len(s) - 1
    rows = check_weights(linear_weights("dpmpp_2m", sigmas) if weights is None else weights, n)
    x0, outputs = x, []
    for i in range(n):
        outputs.append(denoise_step(denoiser, x, s[i], cond, i, callback))
        x = lms_step_input(x0, s[i + 1] / s[0], rows[i], outputs)
    return x
