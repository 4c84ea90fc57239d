"""rill: diffusion models in noise-level space.

One contract — denoiser(x, sigma, cond) -> x0_hat with x = x0 + σ·n — and everything built on it: σ schedules,
samplers as pure functions, text-to-image models, evaluation. `import rill` is light: heavy parts load lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "sample": ("rill.samplers", "sample"),
    "SAMPLERS": ("rill.samplers", "SAMPLERS"),
    "GaussianMixture": ("rill.core.mixture", "GaussianMixture"),
    "EDMPrecond": ("rill.core.parametrisations", "EDMPrecond"),
    "VPAdapter": ("rill.core.parametrisations", "VPAdapter"),
    "CFGDenoiser": ("rill.core.guidance", "CFGDenoiser"),
    "generate": ("rill.inference", "generate"),
    "bundled_model": ("rill.model", "bundled_model"),
    "load_model": ("rill.model", "load_model"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'rill' has no attribute {name!r}")


__all__ = [*_LAZY, "__version__"]
