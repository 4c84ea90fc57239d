"""A model's tuned sampler plans (model.sampling, written by rill.inference.tune) and when one applies.

model.sampling = {"<nfe>": [plan, …]}: per budget, one plan per guidance setting it was tuned at (a plan is
{"sampler", "options", "sigmas", "guidance", "guidance_interval", …}; a single plan instead of the list is
read too). A plan applies only to sampler "auto", at its guidance and guidance interval, on the model's own σ
range. Between two tuned budgets, auto uses the largest tuned plan that fits the budget (fewer calls than
allowed, never more): a tuned 12-call plan beats an untuned 13-call grid, and more calls are then never worse.
Above the largest tuned budget auto's own table applies.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["plan_for", "interval_key", "plans_at"]


def interval_key(guidance: float, interval) -> list[float] | None:
    """A guidance interval as a plan stores it: None for "every σ" (or no guidance), else [lo, hi]."""
    if float(guidance) == 1.0 or interval is None:
        return None
    lo, hi = float(interval[0]), float(interval[1])
    return None if lo <= 0 and math.isinf(hi) else [lo, hi]


def plans_at(model: Any, nfe: int) -> list[dict[str, Any]]:
    """The plans stored for budget `nfe` (a list, whichever form the file holds)."""
    entry = (getattr(model, "sampling", None) or {}).get(str(int(nfe)))
    if not entry:
        return []
    return [entry] if isinstance(entry, dict) else list(entry)


def _applies(plan: dict, guidance: float, interval, sigma_min: float, sigma_max: float) -> bool:
    sig = plan.get("sigmas") or []
    same_range = len(sig) > 1 and math.isclose(sig[0], sigma_max, rel_tol=1e-9) and sig[-1] == 0
    if not same_range or not math.isclose(float(plan.get("guidance", -1)), float(guidance)):
        return False
    if "guidance_interval" in plan and plan["guidance_interval"] != interval_key(guidance, interval):
        return False
    return min(s for s in sig if s > 0) >= sigma_min * (1 - 1e-9)


def plan_for(
    model: Any,
    sampler: str,
    nfe: int,
    guidance: float,
    sigma_min: float,
    sigma_max: float,
    interval=None,
) -> dict[str, Any] | None:
    """The model's tuned plan for this call, or None (module docstring). interval: the guidance interval the
    call uses ((lo, hi), or None for every σ)."""
    if sampler != "auto" or not getattr(model, "sampling", None):
        return None
    tuned = sorted(int(k) for k in model.sampling if str(k).isdigit())
    matching = {
        k: plan
        for k in tuned
        for plan in plans_at(model, k)
        if _applies(plan, guidance, interval, sigma_min, sigma_max)
    }
    fits = [k for k in matching if k <= nfe]
    if not fits or max(matching) < nfe:
        return None
    return matching[max(fits)]
