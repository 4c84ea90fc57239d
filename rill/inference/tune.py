"""Per-model sampler tuning: fit the σ grid of a few-step budget to one trained model, in about a minute.

    plan = tune_sampler(model, nfe=8)            # {"sampler", "options", "sigmas", "guidance", "validation"}
    model.sampling[str(8)] = plan                # generate(model, …, nfe=8) with sampler="auto" now uses it

The objective is the one the sampler benchmark reports: the RMS endpoint error (pixels, clamped to [-1, 1])
against a converged solution of the same guided probability-flow ODE from the same noise (Heun, Karras grid).
Starting from `auto`'s plan, a pattern search moves the grid's knots in normalised log σ
(u_k = log(σ_max/σ_k) / log(σ_max/σ_min), σ_max fixed, so the ODE being solved stays the same) on a tuning set
of prompts × seeds; the result is kept only if it also beats auto's plan on a validation set of other seeds,
by `min_gain`. docs/samplers.md describes the method and what it gains on the bundled models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.checks import check_positive_int
from ..core.sigma import append_zero
from ..samplers import INFO, resolve, sample, sigmas_for, steps_for
from .generate import DEFAULT_GUIDANCE, guided_denoiser, sample_shape, sigma_range

__all__ = ["tune_sampler", "rms_error"]


def rms_error(x: Tensor, ref: Tensor) -> float:
    """RMS pixel error of images clamped to [-1, 1] (the sampler benchmarks' measure)."""
    return float(((x.float().clamp(-1, 1) - ref.float().clamp(-1, 1)) ** 2).mean().sqrt())


def _default_prompts(model: Any, count: int) -> list[str]:
    """Distinct training captions of the model's dataset (or "" for an unconditional model)."""
    if not getattr(model, "conditional", False):
        return [""]
    dataset = str(getattr(model.config, "dataset", "") or "")
    try:
        from ..data import load_dataset

        captions = sorted(set(load_dataset(dataset).captions))
    except (ValueError, TypeError, ImportError):
        captions = []
    if not captions:
        raise ValueError(
            f"tune_sampler: cannot read captions of the model's dataset {dataset!r}; pass prompts=[...]"
        )
    step = max(1, len(captions) // count)
    return captions[::step][:count]


class _Problem:
    """A guided denoiser over prompts × seeds with its converged reference."""

    def __init__(self, model, prompts, seeds, w, lo, hi, reference_nfe):
        self.prompts = [p for p in prompts for _ in seeds]
        shape = sample_shape(model)
        self.z = torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for _ in prompts for s in seeds]
        )
        self.z = self.z.to(model.device)
        guided, cond = guided_denoiser(model, self.prompts, "", w, model.device)
        self.denoiser = lambda x, sigma, c=None: guided(x, sigma, cond)
        self.lo, self.hi = lo, hi
        self.ref = self.run("heun", {}, "karras", reference_nfe)

    @torch.no_grad()
    def run(self, sampler: str, options: dict, grid, nfe: int) -> Tensor:
        return sample(self.denoiser, self.z, nfe=nfe, sampler=sampler, grid=grid, sigma_min=self.lo,
                      sigma_max=self.hi, **options)  # fmt: skip

    def error(self, sampler: str, options: dict, grid, nfe: int) -> float:
        return rms_error(self.run(sampler, options, grid, nfe), self.ref)


def _grid_from_u(u: Sequence[float], lo: float, hi: float) -> Tensor:
    return append_zero(hi * (lo / hi) ** torch.tensor(list(u), dtype=torch.float64))


def _u_from_grid(grid: Tensor, lo: float, hi: float) -> list[float]:
    s = grid[:-1].to(torch.float64)
    return (torch.log(hi / s) / math.log(hi / lo)).tolist()


def _valid(u: Sequence[float]) -> bool:
    return u[0] == 0.0 and all(0 < b - a for a, b in zip(u, u[1:])) and u[-1] <= 1.0


@torch.no_grad()
def tune_sampler(
    model: Any,
    nfe: int,
    *,
    guidance: float | None = None,
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1),
    validation_seeds: Sequence[int] = (100, 101),
    reference_nfe: int = 199,
    evals: int = 60,
    min_gain: float = 0.05,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A sampler plan for `nfe` calls fitted to `model` (module docstring). Returns the plan with the
    validation errors of auto's plan and of the tuned one; `plan["kept"]` says whether the tuned grid won
    (if not, the plan is auto's own, so storing it changes nothing)."""
    check_positive_int("nfe", nfe)
    check_positive_int("evals", evals)
    w = float(
        guidance if guidance is not None else getattr(model.config, "guidance", None) or DEFAULT_GUIDANCE
    )
    lo, hi = sigma_range(model)
    prompts = list(prompts) if prompts is not None else _default_prompts(model, 6)
    say = log or (lambda text: None)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        tune = _Problem(model, prompts, seeds, w, lo, hi, reference_nfe)
        name, options, grid_name = resolve("auto", nfe, guided=w != 1)
        start = sigmas_for(name, nfe, lo, hi, grid_name, **options)
        if INFO[name].nfe(len(start) - 1, options) > nfe:  # cannot happen for auto; keeps the budget honest
            raise ValueError(f"auto's plan exceeds nfe={nfe}")
        u = _u_from_grid(start, lo, hi)
        best = tune.error(name, options, start, nfe)
        steps = steps_for(name, nfe, options)
        say(f"tune-sampler: {name} {options} on {grid_name!r}, {steps} steps: RMS {best:.4f} on "
            f"{len(tune.prompts)} samples (reference: Heun {reference_nfe} calls)")  # fmt: skip
        step, used = 0.08, 1
        while used < evals and step > 0.004:
            improved = False
            for k in range(1, len(u)):
                for sign in (1.0, -1.0):
                    if used >= evals:
                        break
                    trial = list(u)
                    trial[k] = min(1.0, trial[k] + sign * step)
                    if not _valid(trial):
                        continue
                    err = tune.error(name, options, _grid_from_u(trial, lo, hi), nfe)
                    used += 1
                    if err < best:
                        u, best, improved = trial, err, True
            if not improved:
                step /= 2
        tuned = _grid_from_u(u, lo, hi)
        check = _Problem(model, prompts, validation_seeds, w, lo, hi, reference_nfe)
        default_err, tuned_err = (
            check.error(name, options, start, nfe),
            check.error(name, options, tuned, nfe),
        )
        kept = tuned_err < (1 - min_gain) * default_err
        say(f"tune-sampler: {used} trials; validation RMS auto {default_err:.4f}, tuned {tuned_err:.4f} -> "
            + ("kept" if kept else "not kept (gain below min_gain)"))  # fmt: skip
    finally:
        if was_training:
            model.train()
    chosen = tuned if kept else start
    return {
        "sampler": name,
        "options": dict(options),
        "sigmas": [float(s) for s in chosen],
        "guidance": w,
        "kept": bool(kept),
        "validation": {"auto": default_err, "tuned": tuned_err, "seeds": list(validation_seeds)},
        "tuning": {
            "rms": best,
            "trials": used,
            "prompts": list(prompts),
            "seeds": list(seeds),
            "reference_nfe": reference_nfe,
        },  # fmt: skip
    }
