"""Prompt -> images, with classifier-free guidance and per-sample seeds.

    images = generate(model, "a red circle above a blue square", n=4, seed=0)   # (4, C, H, W) in [-1, 1]

Seeds: image j of every prompt uses a CPU `torch.Generator` seeded with `seed + j`, for its starting noise and
for any fresh noise a stochastic sampler draws, so an image never depends on the batch size, on -n or on the
other prompts: image 3 of `n=4` equals image 1 of a run with `seed + 2`, and with several prompts, column j of
the grid shares its starting noise across prompts (the prompt is the only thing that changes along a column).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.checks import check_int, check_positive_int
from ..core.guidance import CFGDenoiser
from ..core.sigma import SIGMA_MAX, SIGMA_MIN, check_sigma_range
from ..model.config import check_guidance_interval
from ..samplers import sample
from .plans import plan_for

__all__ = ["generate", "pick_device", "sample_shape", "sigma_range", "guided_denoiser", "config_value",
           "encode_prompts", "model_device", "eval_mode", "repeat_cond", "DEFAULT_NFE",
           "DEFAULT_GUIDANCE"]  # fmt: skip

DEFAULT_NFE = 16
DEFAULT_GUIDANCE = 2.0


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA if available, else MPS if available, else the CPU."""
    if device is not None and str(device) != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ValueError(
                f"device {device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:1', 'mps'"
            ) from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'cpu'")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"device {device!r} requested but MPS is not available here; use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def config_value(model: Any, *names: str) -> Any:
    config = getattr(model, "config", None)
    for name in names:
        for obj in (config, model):
            value = getattr(obj, name, None) if obj is not None else None
            if value is not None:
                return value
    return None


def sample_shape(model: Any) -> tuple[int, ...]:
    """Shape of one sample, e.g. (1, 8, 8), read from the model's config."""
    shape = config_value(model, "shape", "data_shape", "sample_shape")
    if shape is None:
        raise ValueError(
            f"{type(model).__name__} has no config.shape; cannot tell what size of sample to draw"
        )
    return tuple(int(s) for s in shape)


def sigma_range(
    model: Any, sigma_min: float | None = None, sigma_max: float | None = None
) -> tuple[float, float]:
    """(σ_min, σ_max) for sampling: the arguments, else the model's config, else EDM's 0.002 and 80."""
    lo = sigma_min if sigma_min is not None else config_value(model, "sigma_min") or SIGMA_MIN
    hi = sigma_max if sigma_max is not None else config_value(model, "sigma_max") or SIGMA_MAX
    return check_sigma_range(lo, hi)


def _prompts(prompts: str | Sequence[str]) -> list[str]:
    out = [prompts] if isinstance(prompts, str) else list(prompts)
    if not out:
        raise ValueError("generate() needs at least one prompt ('' for an unconditional sample)")
    for p in out:
        if not isinstance(p, str):
            raise TypeError(f"prompts must be strings, got {type(p).__name__}: {p!r}")
    return out


def encode_prompts(model: Any, prompts: list[str], device: torch.device) -> dict[str, Tensor] | None:
    """The model's cond dict for `prompts` on `device`, or None for an unconditional model."""
    if not getattr(model, "conditional", True):
        return None
    cond = model.encode(prompts)
    return None if cond is None else {k: v.to(device) for k, v in cond.items()}


def model_device(model: Any) -> torch.device | None:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return None if first is None else first.device


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the duration of the call, the caller's mode restored after (no hidden side effect)."""
    was_training = bool(getattr(model, "training", False))
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def repeat_cond(cond: dict[str, Tensor] | None, index: Tensor) -> dict[str, Tensor] | None:
    return None if cond is None else {k: v.index_select(0, index.to(v.device)) for k, v in cond.items()}


def guided_denoiser(
    model: Any,
    prompts: list[str],
    negative: str,
    guidance: float,
    device: torch.device,
    interval: tuple[float, float] | None = None,
):
    """(denoiser, cond) for `prompts`: classifier-free guidance with `negative` as the unconditional branch
    (Ho & Salimans 2022, Eq. 6), or the model's own denoiser when w = 1 or the model is unconditional.
    Guidance acts for σ in `interval` (None: the model's config.guidance_interval, else every σ).
    cond has one row per prompt (None for an unconditional model)."""
    cond = encode_prompts(model, prompts, device)  # (P, ...) or None
    uncond = (
        encode_prompts(model, [negative], device) if cond is not None and float(guidance) != 1.0 else None
    )
    if uncond is None:
        return model.denoiser, cond
    span = interval if interval is not None else config_value(model, "guidance_interval")
    span = (0.0, math.inf) if span is None else check_guidance_interval(span)
    return CFGDenoiser(model.denoiser, uncond, scale=float(guidance), interval=span), cond


@torch.no_grad()
def generate(
    model: Any,
    prompts: str | Sequence[str],
    *,
    negative: str = "",
    n: int = 1,
    nfe: int = DEFAULT_NFE,
    sampler: str = "auto",
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    seed: int = 0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    callback: Callable[[int, Tensor, float, Tensor], None] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    start: Tensor | None = None,
    sigma_start: float | None = None,
    wrap: Callable[[Callable], Callable] | None = None,
) -> Tensor:
    """Sample `n` images per prompt: a (len(prompts) · n, C, H, W) tensor in [-1, 1], prompt-major order.
    (Non-image models, e.g. points (2,) or signals (C, L), give (len(prompts) · n, *shape), not clamped.)

    model: a `rill.model.DiffusionModel` (anything with `.denoiser(x, sigma, cond)`, `.encode(prompts)` and
        `.config.shape`). It is never moved: it runs where it is (eval mode during the call, its mode
        restored after).
    negative: the prompt whose embedding is the unconditional branch of classifier-free guidance; "" is the
        model's unconditional embedding.
    guidance: w in D_∅ + w·(D_c − D_∅) (Ho & Salimans 2022, Eq. 6); 1 = no guidance; None = the model's
        recommended value (config.guidance) or 2.0.
    guidance_interval: (lo, hi), guidance only for σ in [lo, hi], the conditional prediction elsewhere
        (Kynkäänniemi et al. 2024); None = the model's config.guidance_interval (None there: every σ).
    seed: image j of each prompt uses seed + j (see the module docstring).
    nfe, sampler, sigma_min, sigma_max: passed to `rill.sample` (σ range default: the model's config).
    callback(step, x, sigma, x0_hat): called by the sampler at every step (first chunk of `batch_size` only).
    device: where to sample; None = the model's device. A device other than the model's is an error (move
        the model first: model.to(device)). Generators stay on the CPU.
    start, sigma_start: begin part-way down at σ_start from start + σ_start·noise instead of pure noise
        (image-to-image); `start` is one sample (C, H, W) or one per output image; the budget `nfe` is spent
        on the remaining part of the grid (rill.sample).
    wrap: denoiser -> denoiser, applied to the (guided) denoiser: the way to add masks or control (e.g.
        inpainting keeps the known pixels); samplers never learn about it.
    """
    prompts = _prompts(prompts)
    check_positive_int("n (images per prompt)", n)
    check_positive_int("nfe (denoiser evaluations)", nfe)
    check_int("seed", seed, 0)
    check_positive_int("batch_size", batch_size)
    if not isinstance(negative, str):
        raise TypeError(f"negative must be one string, got {type(negative).__name__}")
    w = guidance if guidance is not None else config_value(model, "guidance") or DEFAULT_GUIDANCE
    if not math.isfinite(float(w)):
        raise ValueError(f"guidance must be a finite number, got {w!r}")
    here = model_device(model)
    dev = pick_device(device) if device is not None or here is None else here
    if here is not None and not (here.type == dev.type and dev.index in (None, here.index)):
        raise ValueError(
            f"the model is on {here} but device={str(device)!r} was asked for; generate() does not move the "
            f"caller's model: move it first (model.to({str(device)!r})) or leave device=None"
        )
    dev = here if here is not None else dev
    lo, hi = sigma_range(model, sigma_min, sigma_max)
    shape = sample_shape(model)
    total = len(prompts) * int(n)
    if start is not None:
        start = start.detach().float().cpu()
        if tuple(start.shape) == shape:
            start = start.expand(total, *shape)
        if tuple(start.shape) != (total, *shape):
            raise ValueError(
                f"start has shape {tuple(start.shape)}; expected one sample {shape} or {total} of them"
            )

    # a plan `rill tune-sampler` fitted to this model for this budget and guidance (only for "auto")
    span = guidance_interval if guidance_interval is not None else config_value(model, "guidance_interval")
    plan = plan_for(model, sampler, nfe, float(w), lo, hi, span) if sigma_start is None else None
    grid, options = None, {}
    if plan is not None:
        sampler, grid, options = (
            plan["sampler"],
            torch.tensor(plan["sigmas"], dtype=torch.float64),
            plan["options"],
        )

    with eval_mode(model):
        denoiser, cond = guided_denoiser(model, prompts, negative, float(w), dev, guidance_interval)
        guided = isinstance(denoiser, CFGDenoiser)  # auto then uses rill.samplers.AUTO_GUIDED
        if wrap is not None:
            denoiser = wrap(denoiser)

        # sample k = p·n + j: prompt p, seed + j
        out = []
        for first in range(0, total, batch_size):
            ks = range(first, min(total, first + batch_size))
            gens = [torch.Generator("cpu").manual_seed(int(seed) + k % n) for k in ks]
            noise = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(dev)  # (b, C, H, W), unit
            index = torch.tensor([k // n for k in ks])
            x = sample(
                denoiser,
                noise,
                nfe=int(nfe),
                sampler=sampler,
                sigma_min=lo,
                sigma_max=hi,
                cond=repeat_cond(cond, index),
                generator=gens,
                callback=callback if first == 0 else None,
                start=None if start is None else start[first : first + len(ks)].to(dev),
                sigma_start=sigma_start,
                grid=grid,
                guided=guided,
                **options,
            )
            out.append((x.float().clamp(-1, 1) if len(shape) == 3 else x.float()).cpu())
    return torch.cat(out)
