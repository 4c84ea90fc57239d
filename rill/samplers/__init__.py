"""Samplers: pure functions over a σ grid that ends in 0, one shared signature

    fn(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, **options) -> x

one family per file, each function registered once by @register (registry.py) into SAMPLERS / INFO, keyed by
the names users know. budget.py turns a budget of denoiser calls into a sampler, a σ grid and a sample
(rill.sample, sampler="auto"). Samplers import only rill.core.
"""

from __future__ import annotations

from . import ancestral, dpmpp, heun, ipndm, langevin, lms, unipc  # noqa: F401  (each registers its samplers)
from .budget import AUTO, AUTO_GUIDED, DEFAULT_GRID, resolve, sample, sigmas_for, steps_for
from .registry import INFO, SAMPLERS, SamplerInfo, get_sampler, one_call_per_step, register

__all__ = ["SAMPLERS", "INFO", "SamplerInfo", "get_sampler", "register", "one_call_per_step", "sample",
           "resolve", "sigmas_for", "steps_for", "AUTO", "AUTO_GUIDED", "DEFAULT_GRID"]  # fmt: skip
