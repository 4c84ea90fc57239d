"""Guidance: one seed across guidance w = 1…8 (Ho & Salimans 2022: D_∅ + w·(D_c − D_∅)) with the share of
pixels pushed beyond the valid range, and the prompt's effect D_c − D_∅ at every step as a heat map."""

from __future__ import annotations

import torch

from ...core.guidance import cat_cond
from ..images import make_grid, to_pil
from ._batch import generate_together
from ._common import Inputs, View, image_model, pyplot, save_figure

__all__ = ["guidance", "GUIDANCE_SCALES"]

GUIDANCE_SCALES = (1, 2, 3, 4, 5, 6, 7, 8)


def _last_output():
    """A `wrap` for generate() that keeps the guided denoiser's last output (the image before clamping)."""
    kept = {}

    def wrap(denoiser):
        def recording(x, sigma, cond=None):
            kept["x0"] = denoiser(x, sigma, cond)
            return kept["x0"]

        return recording

    return wrap, kept


@torch.no_grad()
def guidance(inp: Inputs) -> View:
    view = View(
        "guidance",
        "Guidance: pushing towards the prompt, until it oversaturates",
        "Guidance w extrapolates from the unprompted guess towards the "
        "prompted one; w = 1 is the plain model "
        "and larger w follows the prompt harder. Pushed too far, colours run out of range (the clipped-pixel "
        "share rises), and the heat maps show where in "
        "the image, and at which σ, the prompt changes anything.",
    )
    model = inp.model
    if not image_model(model) or not model.conditional:
        view.skipped = "needs a text- or label-conditioned image model"
        return view
    plt = pyplot()
    # every scale side by side (one batched denoiser call per step), the run at the model's own w recording
    # x at each step for the map of D_c − D_∅ below
    w = float(model.config.guidance or 3.0)
    sigmas, xs = [], []

    def record(step, x, sigma, x0_hat):
        sigmas.append(float(sigma))
        xs.append(x[:1].clone())

    scales = list(GUIDANCE_SCALES) + ([] if w in GUIDANCE_SCALES else [w])
    wraps = [_last_output() for _ in scales]
    runs = [
        dict(guidance=float(scale), wrap=wrap, **({"callback": record} if scale == w else {}))
        for scale, (wrap, _) in zip(scales, wraps)
    ]
    done = generate_together(model, runs, prompts=inp.prompt, nfe=inp.nfe, seed=inp.seed, device=inp.device)
    images = [img[0] for img in done[: len(GUIDANCE_SCALES)]]
    clipped = [round(float((kept["x0"].abs() > 1).float().mean()), 4) for _, kept in wraps[: len(images)]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), gridspec_kw={"width_ratios": [3, 1]})
    axes[0].imshow(to_pil(make_grid(torch.stack(images), nrow=len(images))), interpolation="nearest")
    axes[0].set_xticks([(k + 0.5) * (images[0].shape[-1] + 1) for k in range(len(images))])
    axes[0].set_xticklabels([f"w={w}\n{c:.1%}" for w, c in zip(GUIDANCE_SCALES, clipped)])
    axes[0].set_yticks([])
    axes[0].set_title(f"seed {inp.seed}: guidance w and the share of clipped pixels")
    axes[1].plot(GUIDANCE_SCALES, clipped, "o-")
    axes[1].set_xlabel("guidance w")
    axes[1].set_ylabel("share of pixels beyond ±1")
    view.figures.append(save_figure(fig, inp.out, "guidance-scales.png"))

    # D_c − D_∅ at the x of every step of the guided run, in one call
    x = torch.cat(xs)  # (S, C, H, W)
    cond = cat_cond(model.encode([inp.prompt]), model.encode([""]), len(x))  # (2S, ...): prompt, then ""
    s = torch.tensor(sigmas, device=x.device, dtype=x.dtype)
    d_c, d_u = model.denoiser(torch.cat([x, x]), torch.cat([s, s]), cond).chunk(2)
    heat = list((d_c - d_u).abs().mean(1).cpu())  # (H, W) per step
    shown = sorted({round(k * (len(heat) - 1) / 7) for k in range(8)})
    top = float(max(h.max() for h in heat)) or 1.0
    fig, axes = plt.subplots(1, len(shown), figsize=(2 * len(shown), 2.4))
    for ax, k in zip(axes, shown):
        im = ax.imshow(heat[k].numpy(), cmap="inferno", vmin=0, vmax=top)
        ax.set_title(f"σ = {sigmas[k]:.3g}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), fraction=0.02)
    fig.suptitle(f"|D_c − D_∅| per pixel at w = {w:g} (the prompt's effect)")
    view.figures.append(save_figure(fig, inp.out, "guidance-difference.png"))
    view.numbers = {
        "guidance": list(GUIDANCE_SCALES),
        "clipped_share": clipped,
        "difference_sigma": [round(s, 4) for s in sigmas],
        "difference_mean_abs": [round(float(h.mean()), 4) for h in heat],
        "difference_at_w": w,
        "seed": inp.seed,
    }
    return view
