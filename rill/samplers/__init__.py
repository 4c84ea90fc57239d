"""Samplers: pure functions over a σ grid that ends in 0, one shared signature

    fn(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, **options) -> x

and a registry, SAMPLERS, keyed by the names users know. `INFO[name]` says each one's order, whether it is
stochastic and how many denoiser calls it makes for n steps.
"""

from __future__ import annotations

import difflib

from ._common import SamplerInfo, one_call_per_step
from .ancestral import sample_ddim, sample_ddpm, sample_euler, sample_euler_ancestral
from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m
from .heun import heun_nfe, sample_heun
from .ipndm import sample_ipndm
from .langevin import langevin_nfe, sample_langevin
from .unipc import sample_unipc

SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_3m": sample_dpmpp_3m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "unipc": sample_unipc,
    "ipndm": sample_ipndm,
    "langevin": sample_langevin,
}

_one = one_call_per_step
INFO = {
    "ddpm": SamplerInfo(
        "ddpm", 1, True, _one, "DDPM ancestral sampling (Ho et al. 2020); the 1000-step baseline"
    ),
    "ddim": SamplerInfo("ddim", 1, False, _one, "DDIM with η (Song et al. 2021); η = 0 is deterministic"),
    "euler": SamplerInfo("euler", 1, False, _one, "Euler on the probability-flow ODE (Karras et al. 2022)"),
    "euler_ancestral": SamplerInfo("euler_ancestral", 1, True, _one, "Euler step + fresh noise"),
    "heun": SamplerInfo("heun", 2, False, heun_nfe, "EDM Algorithm 2, optional churn"),
    "dpmpp_2m": SamplerInfo("dpmpp_2m", 2, False, _one, "DPM-Solver++(2M) (Lu et al. 2022)"),
    "dpmpp_3m": SamplerInfo("dpmpp_3m", 3, False, _one, "DPM-Solver++(3M)"),
    "dpmpp_2m_sde": SamplerInfo("dpmpp_2m_sde", 1, True, _one, "DPM-Solver++(2M) SDE"),
    "unipc": SamplerInfo("unipc", 3, False, _one, "UniPC bh2, predictor-corrector (Zhao et al. 2023)"),
    "ipndm": SamplerInfo("ipndm", 4, False, _one, "improved PNDM (Zhang & Chen 2023), order up to 4"),
    "langevin": SamplerInfo(
        "langevin",
        1,
        True,
        langevin_nfe,
        "annealed Langevin predictor-corrector (Song et al. 2021, Alg. 1 / 4)",
    ),
}


def get_sampler(name: str):
    """The sampler function for `name`, or a ValueError that suggests the closest names."""
    if name in SAMPLERS:
        return SAMPLERS[name]
    close = difflib.get_close_matches(name, SAMPLERS, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown sampler {name!r}.{hint} Available: {', '.join(SAMPLERS)}")


__all__ = ["SAMPLERS", "INFO", "SamplerInfo", "get_sampler", *[f.__name__ for f in SAMPLERS.values()]]
