"""Per-model sampler tuning: fit a few-step solver to one trained model, in about a minute per budget.

    plans = tune_plans(model, [4, 5, 8], guidance=[1, 3])  # one plan per budget and guidance
    model.sampling["8"] = [plan, …]       # sampler="auto" now uses them (rill.inference.plans)

The objective is the one the sampler benchmark reports: the RMS endpoint error (pixels, clamped to [-1, 1])
against a converged solution of the same guided probability-flow ODE from the same noise (DPM-Solver++(3M),
200 calls on the Karras grid), over training captions × seeds. Two methods, both starting from `auto`'s plan
with σ_max fixed (so the ODE being solved stays the same):
- "learned" (default): the grid and the weights of the lms sampler jointly, by gradient descent through the
  network (rill.inference.learn; LD3 and S4S in spirit);
- "grid": a pattern search over the grid's knots in normalised log σ, auto's solver kept.
A result is kept only if it also beats auto's plan by `min_gain` on validation seeds never used in the fit;
otherwise the plan stored is auto's own. Across budgets the plans are made monotone on the validation seeds:
a budget whose plan is not better than a smaller budget's gets that smaller plan (fewer calls).
docs/samplers.md has what it gains on the bundled models.
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
from ..samplers.lms import linear_weights
from .generate import DEFAULT_GUIDANCE, config_value, guided_denoiser, sample_shape, sigma_range
from .learn import fit_lms
from .plans import interval_key

__all__ = ["tune_sampler", "tune_plans", "rms_error", "METHODS"]

METHODS = ("learned", "grid")
REFERENCE = ("dpmpp_3m", "karras")  # the converged reference (its own error at 200 vs 100 calls: < 0.001 px)


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

    def __init__(self, model, prompts, seeds, w, span, lo, hi, reference_nfe):
        self.prompts = [p for p in prompts for _ in seeds]
        shape = sample_shape(model)
        self.z = torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for _ in prompts for s in seeds]
        ).to(model.device)
        self.guided, self.cond = guided_denoiser(model, self.prompts, "", w, model.device, span)
        self.denoiser = lambda x, sigma, c=None: self.guided(x, sigma, self.cond)
        self.lo, self.hi, self.guided_flag = lo, hi, w != 1
        sampler, grid = REFERENCE
        self.ref = self.run(sampler, {}, grid, reference_nfe)

    @torch.no_grad()
    def run(self, sampler: str, options: dict, grid, nfe: int) -> Tensor:
        return sample(
            self.denoiser,
            self.z,
            nfe=nfe,
            sampler=sampler,
            grid=grid,
            sigma_min=self.lo,
            sigma_max=self.hi,
            guided=self.guided_flag,
            **options,
        )

    def error(self, sampler: str, options: dict, grid, nfe: int) -> float:
        return rms_error(self.run(sampler, options, grid, nfe), self.ref)


def _grid_from_u(u: Sequence[float], lo: float, hi: float) -> Tensor:
    return append_zero(hi * (lo / hi) ** torch.tensor(list(u), dtype=torch.float64))


def _u_from_grid(grid: Tensor, lo: float, hi: float) -> list[float]:
    s = grid[:-1].to(torch.float64)
    return (torch.log(hi / s) / math.log(hi / lo)).tolist()


def _valid(u: Sequence[float]) -> bool:
    return u[0] == 0.0 and all(0 < b - a for a, b in zip(u, u[1:])) and u[-1] <= 1.0


def _pattern_search(
    tune: _Problem, name, options, start: Tensor, nfe: int, evals: int
) -> tuple[Tensor, float, int]:
    """Coordinate pattern search over the knots u_1 … (halving the step when no move helps)."""
    lo, hi = tune.lo, tune.hi
    u, best = _u_from_grid(start, lo, hi), tune.error(name, options, start, nfe)
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
    return _grid_from_u(u, lo, hi), best, used


def _tune_one(
    tune: _Problem,
    check: _Problem,
    nfe: int,
    method: str,
    evals: int,
    steps: int,
    min_gain: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    name, options, grid_name = resolve("auto", nfe, guided=tune.guided_flag)
    start = sigmas_for(name, nfe, tune.lo, tune.hi, grid_name, **options)
    if INFO[name].nfe(len(start) - 1, options) > nfe:  # cannot happen for auto; keeps the budget honest
        raise ValueError(f"auto's plan exceeds nfe={nfe}")
    auto_train = tune.error(name, options, start, nfe)
    if method == "learned":
        with torch.enable_grad():
            sig, rows, train = fit_lms(
                tune.guided,
                tune.z,
                tune.ref,
                start,
                linear_weights(name, start, **options),
                tune.lo,
                steps=steps,
                batch=12,
                cond=tune.cond,
            )
        cand, grid, used = ("lms", {"weights": rows}), torch.tensor(sig, dtype=torch.float64), steps
    else:
        grid, train, used = _pattern_search(tune, name, options, start, nfe, evals)
        cand = (name, dict(options))
    auto_val, tuned_val = check.error(name, options, start, nfe), check.error(*cand, grid, nfe)
    kept = tuned_val < (1 - min_gain) * auto_val
    say(
        f"tune-sampler: nfe {nfe}, {method}: tuning RMS auto {auto_train:.4f} -> {train:.4f}; validation "
        f"auto {auto_val:.4f}, tuned {tuned_val:.4f} -> " + ("kept" if kept else "auto's own plan kept")
    )
    chosen_name, chosen_options, chosen = (*cand, grid) if kept else (name, dict(options), start)
    return {
        "sampler": chosen_name,
        "options": chosen_options,
        "sigmas": [float(s) for s in chosen],
        "nfe": nfe,
        "kept": bool(kept),
        "validation": {"auto": auto_val, "tuned": tuned_val, "used": tuned_val if kept else auto_val},
        "tuning": {
            "method": method,
            "rms_auto": auto_train,
            "rms": train,
            "iterations": used,
            "steps": steps_for(name, nfe, options),
        },
    }


def tune_plans(
    model: Any,
    nfes: Sequence[int],
    *,
    guidance: float | Sequence[float] | None = None,
    interval: tuple[float, float] | None = None,
    method: str = "learned",
    prompts: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3),
    validation_seeds: Sequence[int] = (100, 101),
    reference_nfe: int = 200,
    evals: int = 60,
    steps: int = 120,
    min_gain: float = 0.05,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One plan per budget in `nfes` and guidance in `guidance` (default: the model's), each with its
    validation errors (module docstring).
    interval: the guidance interval to tune under (None: the model's)."""
    if method not in METHODS:
        raise ValueError(f"tune-sampler: method must be one of {METHODS}, got {method!r}")
    budgets = sorted({check_positive_int("nfe", n) for n in nfes})
    check_positive_int("evals", evals)
    check_positive_int("steps", steps)
    default_w = float(config_value(model, "guidance") or DEFAULT_GUIDANCE)
    ws = (
        [default_w]
        if guidance is None
        else [float(g) for g in ([guidance] if isinstance(guidance, (int, float)) else guidance)]
    )
    span = tuple(interval) if interval is not None else config_value(model, "guidance_interval")
    span = (0.0, math.inf) if span is None else (float(span[0]), float(span[1]))
    lo, hi = sigma_range(model)
    prompts = list(prompts) if prompts is not None else _default_prompts(model, 6)
    say = log or (lambda text: None)
    was_training = bool(getattr(model, "training", False))
    grads = [p.requires_grad for p in model.parameters()] if hasattr(model, "parameters") else []
    model.eval()
    if grads:
        model.requires_grad_(False)  # the fit differentiates the sampler, never the network
    plans = []
    try:
        for w in ws:
            tune = _Problem(model, prompts, seeds, w, span, lo, hi, reference_nfe)
            check = _Problem(model, prompts, validation_seeds, w, span, lo, hi, reference_nfe)
            say(
                f"tune-sampler: guidance {w:g}, {len(tune.prompts)} tuning / {len(check.prompts)} validation "
                f"samples, reference {REFERENCE[0]} {reference_nfe} calls"
            )
            best = None
            for nfe in budgets:
                plan = _tune_one(tune, check, nfe, method, evals, steps, min_gain, say)
                if best is not None and plan["validation"]["used"] >= best["validation"]["used"]:
                    say(
                        f"tune-sampler: nfe {nfe} is not better than nfe {best['nfe']} on validation; it "
                        f"uses that plan ({best['nfe']} calls)"
                    )
                    plan = {
                        **best,
                        "kept": best["kept"],
                        "nfe": nfe,
                        "uses_nfe": best.get("uses_nfe", best["nfe"]),
                    }
                else:
                    best = plan
                plan.update(
                    guidance=w,
                    guidance_interval=interval_key(w, span),
                    tuning={
                        **plan["tuning"],
                        "prompts": list(prompts),
                        "seeds": list(seeds),
                        "validation_seeds": list(validation_seeds),
                        "reference_nfe": reference_nfe,
                    },
                )
                plans.append(plan)
    finally:
        for p, g in zip(model.parameters() if grads else [], grads):
            p.requires_grad_(g)
        if was_training:
            model.train()
    return plans


def tune_sampler(model: Any, nfe: int, *, guidance: float | None = None, **kwargs) -> dict[str, Any]:
    """The plan for one budget and guidance (tune_plans with one of each); plan["kept"] says whether the
    tuned solver won on validation (if not, the plan is auto's own, so storing it changes nothing)."""
    return tune_plans(model, [nfe], guidance=None if guidance is None else [guidance], **kwargs)[0]
