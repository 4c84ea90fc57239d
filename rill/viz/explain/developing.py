"""Developing: x_t and x̂0 = D(x_t; σ) at every step, and how much of each step's change is coarse (low
spatial frequency) or fine (high)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..strip import denoising_strip
from ._common import Inputs, View, image_model, pyplot, rms, save_figure

__all__ = ["developing", "band_energy", "LOW_BAND"]

LOW_BAND = 0.25  # cycles per pixel: below = "low frequency" (periods longer than 4 pixels)


def band_energy(change: Tensor, cutoff: float = LOW_BAND) -> tuple[float, float]:
    """(low, high) energy of a (C, H, W) image by the radial frequency of its 2-D Fourier transform
    (Parseval: low + high = the squared norm of `change`)."""
    c, h, w = change.shape
    power = torch.fft.fft2(change.double()).abs().pow(2).sum(0) / (h * w)  # (H, W)
    fy, fx = torch.fft.fftfreq(h, dtype=torch.float64), torch.fft.fftfreq(w, dtype=torch.float64)
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
    low = float(power[radius < cutoff].sum())
    return low, float(power.sum()) - low


def developing(inp: Inputs) -> View:
    view = View(
        "developing",
        "Developing: the image comes out of static, coarse shapes first",
        "At each step the sampler holds a noisy image x (top row) and the model's guess of the clean image "
        "x̂0 (bottom row); the guess starts as a blurry average "
        "and sharpens as σ falls. The chart splits each "
        "step's change of x̂0 into coarse (low-frequency) and fine (high-frequency) parts: coarse layout "
        "settles in the first steps, fine detail in the last.",
    )
    if not image_model(inp.model):
        view.skipped = f"the model makes samples of shape {tuple(inp.model.config.shape)}, not images"
        return view
    strip = denoising_strip(inp.model, inp.prompt, nfe=inp.nfe, seed=inp.seed, device=inp.device)
    view.figures += [
        strip.save(inp.out / "developing-strip.png", scale=max(2, 64 // strip.final.shape[-1])).name,
        strip.save_gif(inp.out / "developing.gif", scale=max(2, 128 // strip.final.shape[-1])).name,
    ]
    x0s = torch.cat([strip.x0s, strip.final[None]])  # x̂0 per step, then the sample
    error = [rms(x0, strip.final) for x0 in strip.x0s]
    bands = [band_energy(b - a) for a, b in zip(x0s[:-1], x0s[1:])]  # change of x̂0 at each step
    low_share = [lo / (lo + hi) if lo + hi > 0 else 0.0 for lo, hi in bands]
    view.numbers = {
        "sigma": [round(s, 4) for s in strip.sigmas],
        "x0_rms_error_to_final": [round(e, 4) for e in error],
        "change_low_share": [round(s, 3) for s in low_share],
        "low_band_cycles_per_pixel": LOW_BAND,
        "nfe": inp.nfe,
        "seed": inp.seed,
    }

    plt = pyplot()
    steps = range(len(bands))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.bar(steps, low_share, label=f"low (< {LOW_BAND} cycles/px)", color="#3b75af")
    a1.bar(steps, [1 - s for s in low_share], bottom=low_share, label="high", color="#ef8636")
    a1.set_xlabel("step")
    a1.set_ylabel("share of the change of x̂0 (energy)")
    a1.legend()
    a1.set_title("what each step changes")
    a2.semilogy(list(steps), error, "o-", color="#3b75af")
    a2.set_xlabel("step")
    a2.set_ylabel("RMS distance of x̂0 to the final image")
    a2.set_xticks(list(steps)[:: max(1, len(bands) // 8)])
    a2.set_title("x̂0 converges to the sample")
    view.figures.append(save_figure(fig, inp.out, "developing-bands.png"))
    return view
