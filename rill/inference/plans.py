"""A model's tuned sampler plans (model.sampling, written by rill.inference.tune) and when one applies."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["plan_for"]


def plan_for(model: Any, sampler: str, nfe: int, guidance: float, sigma_min: float, sigma_max: float):
    """The model's tuned plan for this call, or None: only for sampler "auto", the tuned budget, the guidance
    it was tuned at and the model's own σ range."""
    entry = (getattr(model, "sampling", None) or {}).get(str(int(nfe)))
    if sampler != "auto" or not entry:
        return None
    sig = entry.get("sigmas") or []
    same_range = len(sig) > 1 and math.isclose(sig[0], sigma_max, rel_tol=1e-9) and sig[-1] == 0
    if not same_range or not math.isclose(float(entry.get("guidance", -1)), float(guidance)):
        return None
    if min(s for s in sig if s > 0) < sigma_min * (1 - 1e-9):
        return None
    return entry
