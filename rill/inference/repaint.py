"""RePaint resampling (Lugmayr et al. 2022, Alg. 1 with jumps) on top of unchanged samplers.

The main σ grid σ_0 > … > σ_S = 0 is walked in blocks of `jump_length` steps. After every block that does not
end at 0, the state is sent back up from σ_b to the block's start σ_a with fresh noise,
x_a = x_b + sqrt(σ_a² − σ_b²)·z (the forward process q(x_a | x_b) in VE coordinates), and the block is
denoised again; `jumps` times per block. Each block is one ordinary sampler run over [σ_a, …, σ_b, 0] whose
state at σ_b is read from the sampler's callback (the step to 0 that follows costs no extra call for any
registered sampler); so samplers stay pure functions over grids that end in 0 and never learn about masks or
jumps. Multistep samplers restart their history at every block.

Budget: `nfe` counts every denoiser call, the re-denoising included. `plan` picks the largest number of main
steps S whose walk fits the budget, counted exactly by a dry run of the same walk with a free stand-in
denoiser; a call that repeats the previous one (same x, same σ, as when a block resumes from the state at
which the last one stopped) is answered from memory and not counted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..core.grids import make_grid
from ..samplers import get_sampler, resolve, steps_for
from ..samplers._common import noise_like

__all__ = ["repaint_walk", "plan", "Reuse"]


class Reuse:
    """Denoiser wrapper that answers a call identical to the previous one (x and σ equal) from memory, and
    counts the calls it passes on."""

    def __init__(self, denoiser: Callable) -> None:
        self.denoiser, self.calls, self._last = denoiser, 0, None

    def __call__(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        last = self._last
        if last is not None and last[2] is cond and torch.equal(last[1], sigma) and torch.equal(last[0], x):
            return last[3]
        self.calls += 1
        out = self.denoiser(x, sigma, cond)
        self._last = (x.clone(), sigma.clone() if isinstance(sigma, Tensor) else sigma, cond, out)
        return out


def _block(denoiser, x: Tensor, sigmas: list[float], name: str, options: dict, cond, generator) -> Tensor:
    """Run the sampler from σ = sigmas[0] to sigmas[-1]; a block ending above 0 runs on sigmas + [0] and
    returns the state the sampler reports at the opening of its last step."""
    fn = get_sampler(name)
    if sigmas[-1] == 0:
        grid = torch.tensor(sigmas, dtype=torch.float64)
        return fn(denoiser, x, grid, cond=cond, generator=generator, **options)
    grid = torch.tensor([*sigmas, 0.0], dtype=torch.float64)
    reached: list[Tensor] = []

    def catch(step: int, x_i: Tensor, sigma: float, x0_hat: Tensor) -> None:
        if step == len(sigmas) - 1:
            reached.append(x_i.clone())

    fn(denoiser, x, grid, cond=cond, generator=generator, callback=catch, **options)
    return reached[0]


def repaint_walk(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    sampler: str,
    options: dict,
    jumps: int,
    jump_length: int,
    cond=None,
    generator=None,
) -> Tensor:
    """The RePaint walk over `sigmas` (the main grid, ending in 0) from x at σ_0 (module docstring)."""
    s = [float(v) for v in sigmas]
    steps = len(s) - 1
    for a in range(0, steps, jump_length):
        b = min(a + jump_length, steps)
        x_b = _block(denoiser, x, s[a : b + 1], sampler, options, cond, generator)
        if b < steps:
            for _ in range(jumps):
                # Jump back up: x_a ~ q(x_a | x_b) = N(x_b, (σ_a² − σ_b²) I).
                x_a = x_b + noise_like(x_b, generator) * (s[a] ** 2 - s[b] ** 2) ** 0.5
                x_b = _block(denoiser, x_a, s[a : b + 1], sampler, options, cond, generator)
        x = x_b
    return x


def _cost(name: str, options: dict, steps: int, jumps: int, jump_length: int) -> int:
    """Denoiser calls of the walk with `steps` main steps, counted by running it with a stand-in denoiser."""
    counter = Reuse(lambda x, sigma, cond: 0.5 * x)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, generator=g)
    grid = make_grid("karras", steps, 0.01, 10.0)  # the count does not depend on the σ values
    repaint_walk(counter, x, grid, sampler=name, options=options, jumps=jumps, jump_length=jump_length,
                 generator=g)  # fmt: skip
    return counter.calls


def plan(
    sampler: str,
    nfe: int,
    jumps: int,
    jump_length: int,
    sigma_min: float,
    sigma_max: float,
    guided: bool = False,
) -> tuple[str, dict, Tensor, int]:
    """(sampler name, options, main σ grid, calls) of the RePaint walk that fits `nfe` denoiser calls
    (guided: the denoiser applies classifier-free guidance, see rill.samplers.resolve)."""
    name, options, grid = resolve(sampler, nfe, guided=guided)
    steps = steps_for(name, nfe, options)
    while steps > 1 and _cost(name, options, steps, jumps, jump_length) > nfe:
        steps -= 1
    if steps <= jump_length:
        least = _cost(name, options, jump_length + 1, jumps, jump_length)
        raise ValueError(
            f"repaint_jumps={jumps} with jump_length={jump_length} needs nfe >= {least} with sampler "
            f"{name!r} (more than one block of steps); nfe={nfe} is too small: raise nfe or lower jump_length"
        )
    return (
        name,
        options,
        make_grid(grid, steps, sigma_min, sigma_max),
        _cost(name, options, steps, jumps, jump_length),
    )
