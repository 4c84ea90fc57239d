"""rill.inference: prompt -> images (generate.py), and editing (edit.py: inpaint, outpaint, img2img — start
at any σ, denoiser wrappers)."""

from .edit import EditResult, img2img, inpaint, outpaint, strength_to_sigma
from .generate import generate, pick_device, sample_shape, sigma_range

__all__ = ["generate", "pick_device", "sample_shape", "sigma_range", "inpaint", "outpaint", "img2img",
           "EditResult", "strength_to_sigma"]  # fmt: skip
