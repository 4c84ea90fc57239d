"""Editing with any rill model and any sampler, no special training: inpainting, outpainting, image-to-image.

    out = inpaint(model, image, mask, "a handwritten digit 3", n=4, seed=0)   # mask: white (1) = regenerate
    out = outpaint(model, image, (0, 0, 4, 0), "a 3")                          # grow the canvas, fill it
    out = img2img(model, image, "a 7", strength=0.5)                          # SDEdit from σ_start
    out.images, out.calls, out.sigma_start

Inpainting wraps the denoiser (masks.KnownRegion): at every call the known region is the input noised to the
current σ with the sample's own noise draw ε_j (image j uses seed + j, the same ε as generate()), and the
prediction there is the input itself. At the end the pixels outside the mask are pasted back, so they are the
input's bit for bit; `blur` feathers the blend inward only. RePaint jumps: rill.inference.repaint.
img2img (SDEdit, Meng et al. 2022) starts generate() at σ_start = strength_to_sigma(strength).
See docs/editing.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.checks import check_int, check_positive_int, check_range
from ..core.guidance import CFGDenoiser
from .generate import (
    DEFAULT_GUIDANCE,
    DEFAULT_NFE,
    config_value,
    eval_mode,
    generate,
    guided_denoiser,
    model_device,
    repeat_cond,
    sample_shape,
    sigma_range,
)
from .masks import CallCounter, KnownRegion, check_image, check_mask, feather, pad_canvas
from .repaint import Reuse, plan, repaint_walk

__all__ = ["EditResult", "inpaint", "outpaint", "img2img", "strength_to_sigma", "DEFAULT_JUMP_LENGTH"]

DEFAULT_JUMP_LENGTH = 2  # main-grid steps per RePaint block (benchmarks/results/edit.md)


@dataclass(frozen=True)
class EditResult:
    """What an edit returns: the images and what it cost."""

    images: Tensor  # (n, C, H, W) in [-1, 1]
    calls: int  # denoiser calls actually spent per image (0: the input returned unchanged)
    sigma_start: float  # σ the walk began at (σ_max for inpainting; 0.0 when nothing was sampled)
    note: str = ""  # what happened, when it is not the obvious (all-white mask, strength 0 or 1)


def strength_to_sigma(strength: float, sigma_min: float, sigma_max: float) -> float:
    """SDEdit strength s ∈ [0, 1] -> σ_start = σ_min^(1−s)·σ_max^s: s is the quantile in log σ of the model's
    sampling range (s = 0: σ_min, 0.5: the geometric middle, 1: σ_max)."""
    check_range("strength", float(strength), 0.0, 1.0)
    return math.exp((1 - strength) * math.log(sigma_min) + strength * math.log(sigma_max))


def _noise(seeds: Sequence[int], shape: tuple[int, ...]) -> Tensor:
    """ε_j per seed, drawn exactly as generate() draws its starting noise (CPU generator seeded with seed)."""
    return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds])


def _check_common(prompt: str, n: int, seed: int, nfe: int, batch_size: int) -> None:
    if not isinstance(prompt, str):
        raise TypeError(f"the prompt must be one string, got {type(prompt).__name__}")
    check_positive_int("n (images)", n)
    check_int("seed", seed, 0)
    check_positive_int("nfe (denoiser evaluations)", nfe)
    check_positive_int("batch_size", batch_size)


def _generate_counted(model, prompt: str, *, n: int, seed: int, batch_size: int, **kw) -> tuple[Tensor, int]:
    """generate() and the denoiser calls one image's walk spent (every chunk of batch_size walks the same)."""
    counters: list[CallCounter] = []

    def wrap(d):
        counters.append(CallCounter(d))
        return counters[-1]

    images = generate(model, prompt, n=n, seed=seed, batch_size=batch_size, wrap=wrap, **kw)
    return images, counters[0].calls // math.ceil(n / batch_size)


def _repaint(model, prompt, known, weight, seeds, jumps, jump_length, *, negative, nfe, sampler, guidance,
             sigma_min, sigma_max) -> tuple[Tensor, int]:  # fmt: skip
    """One chunk of RePaint inpainting: generate()'s guidance and per-sample generators, the RePaint walk."""
    lo, hi = sigma_range(model, sigma_min, sigma_max)
    w = guidance if guidance is not None else config_value(model, "guidance") or DEFAULT_GUIDANCE
    dev = model_device(model) or torch.device("cpu")
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    noise = torch.stack([torch.randn(known.shape[1:], generator=g) for g in gens]).to(dev)  # as generate()
    with eval_mode(model):
        d, cond = guided_denoiser(model, [prompt], negative, float(w), dev)
        guided = isinstance(d, CFGDenoiser)  # auto then uses rill.samplers.AUTO_GUIDED
        name, options, sigmas, _ = plan(sampler, nfe, jumps, jump_length, lo, hi, guided=guided)
        counted = Reuse(KnownRegion(d, known, weight, noise))
        cond = repeat_cond(cond, torch.zeros(len(seeds), dtype=torch.long))
        x = (1 - weight.to(dev)) * known.to(dev) + noise * float(sigmas[0])  # known region: known + σ·ε
        x = repaint_walk(counted, x, sigmas, sampler=name, options=options, jumps=jumps,
                         jump_length=jump_length, cond=cond, generator=gens)  # fmt: skip
    return x.float().clamp(-1, 1).cpu(), counted.calls


@torch.no_grad()
def inpaint(
    model,
    image: Tensor,
    mask: Tensor,
    prompt: str,
    *,
    negative: str = "",
    n: int = 1,
    seed: int = 0,
    nfe: int = DEFAULT_NFE,
    sampler: str = "auto",
    guidance: float | None = None,
    repaint_jumps: int = 0,
    jump_length: int = DEFAULT_JUMP_LENGTH,
    blur: float = 0.0,
    invert_mask: bool = False,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    batch_size: int = 64,
) -> EditResult:
    """Regenerate the white part of `mask` in `image` (C, H, W) in [-1, 1]; n results, j seeded seed + j.
    A batch of images (N, C, H, W) gives one result each (result j: image j, seed + j).

    mask: (H, W) or (1, H, W), bool or float (≥ 0.5 = white = regenerate); invert_mask swaps the colours.
        An empty mask is refused (nothing to regenerate); an all-white mask is plain generation: the result is
        generate() from the same seed, bit for bit (RePaint jumps have nothing to blend and are skipped).
    nfe: every denoiser call counts, RePaint's re-denoising included (fewer main steps when jumps > 0).
    repaint_jumps, jump_length: RePaint (rill.inference.repaint): after every block of jump_length main steps,
        jump back up to the block's start and re-denoise, repaint_jumps times; 0 = no resampling.
    blur: feather the blend over this many pixels (Gaussian std), inward only: pixels outside the mask stay
        the input's exactly whatever blur is; 0 (default) = hard mask.
    """
    _check_common(prompt, n, seed, nfe, batch_size)
    check_int("repaint_jumps", repaint_jumps, 0)
    check_positive_int("jump_length", jump_length)
    shape = sample_shape(model)
    if len(shape) != 3:
        raise ValueError(f"inpainting needs an image model (C, H, W); this model draws {shape}")
    images = check_image(image, shape, n)
    n = len(images)
    hard = check_mask(mask, shape[1:], invert_mask)
    weight = feather(hard, float(blur))  # (H, W): 0 outside the mask
    kw = dict(negative=negative, nfe=nfe, sampler=sampler, guidance=guidance, sigma_min=sigma_min,
              sigma_max=sigma_max)  # fmt: skip
    sigma_top = sigma_range(model, sigma_min, sigma_max)[1]
    if bool(hard.all()):
        images, calls = _generate_counted(model, prompt, n=n, seed=seed, batch_size=batch_size, **kw)
        return EditResult(images, calls, sigma_top, "the mask is all white: plain generation from the seed")
    out, calls = [], 0
    for first in range(0, n, batch_size):
        seeds = list(range(seed + first, seed + min(n, first + batch_size)))
        known = images[first : first + len(seeds)]
        if repaint_jumps:
            x, c = _repaint(model, prompt, known, weight, seeds, repaint_jumps, jump_length, **kw)
        else:
            wrapped: list[CallCounter] = []

            noise = _noise(seeds, shape)

            def wrap(d, known=known, noise=noise, wrapped=wrapped):
                wrapped.append(CallCounter(KnownRegion(d, known, weight, noise)))
                return wrapped[-1]

            start = (1 - weight) * known  # the walk starts at known + σ_max·ε in the known region
            x = generate(model, prompt, n=len(seeds), seed=seeds[0], batch_size=len(seeds), start=start,
                         wrap=wrap, **kw)  # fmt: skip
            c = wrapped[0].calls
        calls = calls or c
        out.append(x)
    generated = torch.cat(out)
    # Paste back: outside the mask the input itself, bit for bit; inside, the generated image (blended with
    # the input by the feather weight when blur > 0).
    blended = generated if blur == 0 else weight * generated + (1 - weight) * images
    return EditResult(torch.where(hard, blended, images), calls, sigma_top)


def outpaint(model, image: Tensor, pad: Sequence[int], prompt: str, **options) -> EditResult:
    """Grow `image` (C, h, w) by pad = (left, top, right, bottom) pixels to the model's size and fill the
    border by inpainting (options as inpaint()); the original pixels come back bit for bit."""
    canvas, mask = pad_canvas(image, pad, sample_shape(model))
    return inpaint(model, canvas, mask, prompt, **options)


@torch.no_grad()
def img2img(
    model,
    image: Tensor,
    prompt: str,
    *,
    strength: float,
    negative: str = "",
    n: int = 1,
    seed: int = 0,
    nfe: int = DEFAULT_NFE,
    sampler: str = "auto",
    guidance: float | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    batch_size: int = 64,
) -> EditResult:
    """SDEdit (Meng et al. 2022): noise `image` to σ_start = strength_to_sigma(strength) and denoise from
    there with all `nfe` calls (rill.sample spends the whole budget on the rest of the grid).

    strength 0: the input itself, unchanged (no call); strength 1: plain generation, generate() from the same
    seed bit for bit (the input is not used: at σ_max it is drowned in noise anyway). A batch of images
    (N, C, H, W) gives one result each (result j: image j, seed + j). Returned: the images, σ_start and the
    calls used.
    """
    _check_common(prompt, n, seed, nfe, batch_size)
    shape = sample_shape(model)
    lo, hi = sigma_range(model, sigma_min, sigma_max)
    sigma_start = strength_to_sigma(strength, lo, hi)
    images = check_image(image, shape, n)
    n = len(images)
    kw = dict(negative=negative, nfe=nfe, sampler=sampler, guidance=guidance, sigma_min=sigma_min,
              sigma_max=sigma_max, batch_size=batch_size)  # fmt: skip
    if strength == 0:
        return EditResult(images.clone(), 0, 0.0, "strength 0: the input, unchanged")
    if strength == 1:
        images, calls = _generate_counted(model, prompt, n=n, seed=seed, **kw)
        return EditResult(images, calls, hi, "strength 1: plain generation (the input is not used)")
    images, calls = _generate_counted(
        model, prompt, n=n, seed=seed, start=images, sigma_start=sigma_start, **kw
    )
    return EditResult(images, calls, sigma_start)
