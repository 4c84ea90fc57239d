"""Masks for editing: checks, boxes, padding for outpainting, the inward feather, and the denoiser wrapper
that keeps the known region.

Convention (diffusers', A1111's): white (1, True) = the region to REGENERATE; black (0) = keep the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.tensors import append_dims, sigma_batch

__all__ = ["check_image", "check_mask", "box_mask", "pad_canvas", "feather", "KnownRegion", "CallCounter"]


def check_image(image: Tensor, shape: tuple[int, ...], n: int = 1, what: str = "image") -> Tensor:
    """(N, C, H, W) float images to edit: one image (C, H, W) repeated n times, or N images (N, C, H, W), one
    result each (then n must be 1 or N); a one-line ValueError when they do not fit the model."""
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise ValueError(
            f"the {what} must be a float tensor (C, H, W) in [-1, 1], got {type(image).__name__}"
        )
    if image.ndim == 4 and n not in (1, len(image)):
        raise ValueError(
            f"got {len(image)} images and n={n}: a batch of images gives one result each; use n=1"
        )
    if tuple(image.shape[-3:]) != tuple(shape) or image.ndim not in (3, 4):
        c, h, w = shape
        raise ValueError(
            f"the {what} has shape {tuple(image.shape)} but the model draws {tuple(shape)} "
            f"({c} channel(s), {h}×{w} px); give a {w}×{h} image with {c} channel(s)"
        )
    if not torch.isfinite(image).all():
        raise ValueError(f"the {what} contains NaN or inf values; pass pixel values in [-1, 1]")
    image = image.detach().float().cpu()
    return image if image.ndim == 4 else image[None].expand(n, *shape)


def check_mask(mask: Tensor, size: tuple[int, int], invert: bool = False) -> Tensor:
    """A (H, W) bool mask, True = regenerate, from a bool or [0, 1] float tensor (H, W) or (1, H, W) (values
    ≥ 0.5 count as white). Refuses a mask of the wrong size and an empty one (nothing to regenerate)."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"the mask must be a tensor (H, W), got {type(mask).__name__}")
    m = mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask
    if m.ndim != 2 or tuple(m.shape) != tuple(size):
        h, w = size
        raise ValueError(
            f"the mask has shape {tuple(mask.shape)} but the image is {w}×{h} px; give a mask of shape "
            f"({h}, {w}) (white = regenerate), or a box"
        )
    m = m.detach().cpu()
    m = m if m.dtype == torch.bool else m.float() >= 0.5
    if invert:
        m = ~m
    if not bool(m.any()):
        raise ValueError(
            "the mask is empty (no white pixel), so there is nothing to regenerate; white = regenerate: "
            "invert the mask (--invert-mask) if yours marks the part to keep"
        )
    return m


def box_mask(size: tuple[int, int], box: Sequence[int]) -> Tensor:
    """(H, W) bool mask, True inside the box x0 ≤ x < x1, y0 ≤ y < y1 (pixels, x to the right, y down)."""
    h, w = size
    if len(box) != 4 or any(int(v) != v for v in box):
        raise ValueError(f"a box is four integers x0,y0,x1,y1; got {tuple(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(
            f"box {x0},{y0},{x1},{y1} does not fit the {w}×{h} image; need 0 ≤ x0 < x1 ≤ {w} and "
            f"0 ≤ y0 < y1 ≤ {h}"
        )
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def pad_canvas(image: Tensor, pad: Sequence[int], shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(canvas, mask) for outpainting: `image` (C, h, w) placed on a canvas grown by pad = (left, top, right,
    bottom) pixels, which must be the model's shape; the mask is white (regenerate) on the added border."""
    if len(pad) != 4 or any(int(p) != p or p < 0 for p in pad):
        raise ValueError(f"pad is four non-negative integers left,top,right,bottom; got {tuple(pad)}")
    left, top, right, bottom = (int(p) for p in pad)
    if not left + top + right + bottom:
        raise ValueError(
            "pad is 0,0,0,0: nothing to outpaint; give the pixels to add as left,top,right,bottom"
        )
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise ValueError(f"the image must be a (C, H, W) tensor, got {getattr(image, 'shape', image)}")
    c, h, w = image.shape
    want = (c, h + top + bottom, w + left + right)
    if want != tuple(shape):
        raise ValueError(
            f"a {w}×{h} image padded by {left},{top},{right},{bottom} is {want[2]}×{want[1]} with {c} "
            f"channel(s), but the model draws {tuple(shape)}; choose pad so the canvas is "
            f"{shape[2]}×{shape[1]}"
        )
    canvas = torch.zeros(want, dtype=torch.float32)
    canvas[:, top : top + h, left : left + w] = image.detach().float().cpu()
    mask = torch.ones(want[1:], dtype=torch.bool)
    mask[top : top + h, left : left + w] = False
    return canvas, mask


def feather(mask: Tensor, blur: float) -> Tensor:
    """(H, W) float weight of the generated image: 0 outside the mask, blended inward near its edge.

    weight = Gaussian blur (std `blur` px, edge-replicated) of the mask, kept only inside the mask, so the
    pixels outside stay the input's exactly; blur = 0 gives the hard 0/1 mask."""
    if not (math.isfinite(blur) and blur >= 0):
        raise ValueError(f"blur={blur!r} must be a finite number of pixels >= 0 (0 = no feathering)")
    hard = mask.float()
    if blur == 0:
        return hard
    r = max(1, math.ceil(3 * blur))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / blur) ** 2)
    k = k / k.sum()
    x = F.pad(hard[None, None], (r, r, r, r), mode="replicate")
    x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))[0, 0]
    return torch.where(mask, x.clamp(0, 1), torch.zeros(()))


class KnownRegion:
    """Denoiser wrapper for inpainting: where the weight w is 0 the input x is replaced by the known image
    noised to the current σ with this sample's own noise, known + σ·ε, and the prediction by the known image:

        x' = w·x + (1 − w)·(known + σ·ε),    D'(x; σ) = w·D(x'; σ) + (1 − w)·known

    so a sampler walks the known region along known + σ·ε (exactly, for the deterministic ODE solvers) and
    never learns about the mask. known: (B, C, H, W); weight: broadcastable to it; noise: (B, C, H, W).
    """

    def __init__(self, denoiser: Callable, known: Tensor, weight: Tensor, noise: Tensor) -> None:
        self.denoiser, self.known, self.weight, self.noise = denoiser, known, weight, noise
        self.keep = 1 - weight

    def __call__(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        if self.known.device != x.device:  # the caller's tensors stay where they were
            self.known, self.weight, self.noise = (
                t.to(x.device) for t in (self.known, self.weight, self.noise)
            )
            self.keep = 1 - self.weight
        s = append_dims(sigma_batch(sigma, x), x.ndim)  # (B, 1, 1, 1)
        x_in = self.weight * x + self.keep * (self.known + s * self.noise)
        return self.weight * self.denoiser(x_in, sigma, cond) + self.keep * self.known


class CallCounter:
    """Denoiser wrapper that counts its calls (what rill reports as 'calls used'); values pass through."""

    def __init__(self, denoiser: Callable) -> None:
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        self.calls += 1
        return self.denoiser(x, sigma, cond)
