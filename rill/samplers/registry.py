"""The sampler registry: each family file registers its functions once, with the facts rill.sample and the
tests need.

    @register("euler", order=1, stochastic=False, description="Euler on the probability-flow ODE")
    def sample_euler(denoiser, x, sigmas, *, cond=None, generator=None, callback=None) -> x
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SamplerInfo", "SAMPLERS", "INFO", "register", "get_sampler", "one_call_per_step"]


def one_call_per_step(n: int, opts: dict) -> int:
    return n


@dataclass(frozen=True)
class SamplerInfo:
    """What rill.sample and the tests need to know about a sampler."""

    name: str
    order: int  # convergence order of the deterministic (η = 0) ODE solver; 1 for first-order/SDE
    stochastic: bool  # draws fresh noise during sampling
    nfe: Callable[[int, dict], int]  # (number of steps, options) -> denoiser calls
    description: str = ""


SAMPLERS: dict[str, Callable] = {}  # name -> sampler function
INFO: dict[str, SamplerInfo] = {}  # name -> its facts


def register(
    name: str,
    *,
    order: int,
    stochastic: bool,
    description: str,
    nfe: Callable[[int, dict], int] = one_call_per_step,
) -> Callable[[Callable], Callable]:
    """Function decorator: add a sampler to SAMPLERS and INFO under `name` (written only here)."""

    def add(fn: Callable) -> Callable:
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice")
        SAMPLERS[name] = fn
        INFO[name] = SamplerInfo(name, order, stochastic, nfe, description)
        return fn

    return add


def get_sampler(name: str) -> Callable:
    """The sampler function for `name`, or a ValueError that suggests the closest names."""
    if name in SAMPLERS:
        return SAMPLERS[name]
    close = difflib.get_close_matches(str(name), SAMPLERS, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown sampler {name!r}.{hint} Available: {', '.join(SAMPLERS)}")
