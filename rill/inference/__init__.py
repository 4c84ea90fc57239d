"""rill.inference: prompt -> images (generate.py), and the home for editing (start at any σ, denoiser
wrappers)."""

from .generate import generate, pick_device, sample_shape, sigma_range

__all__ = ["generate", "pick_device", "sample_shape", "sigma_range"]
