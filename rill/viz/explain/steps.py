"""Steps: one seed across budgets of 2…100 denoiser calls for three samplers, with the distance to a converged
image (where more steps stop helping)."""

from __future__ import annotations

import torch

from ..images import make_grid, to_pil
from ._batch import generate_together
from ._common import Inputs, View, image_model, pyplot, rms, save_figure

__all__ = ["steps", "STEP_SAMPLERS", "STEP_NFES", "REFERENCE"]

STEP_SAMPLERS = ("euler", "dpmpp_2m", "auto")
STEP_NFES = (2, 4, 8, 16, 32, 100)
# the converged probability-flow ODE solution: DPM-Solver++(3M) with 200 calls, within 1.2e-4 RMS of 600 Heun
# steps on the bundled models (75 Heun steps, used before, were 7e-4 / 1e-3 away, as far as 100-call images);
# "reference_error" checks it on every model: its distance to the same sampler at half the calls
REFERENCE = ("dpmpp_3m", 200)


def steps(inp: Inputs) -> View:
    view = View(
        "steps",
        "Steps: more is not always better",
        "The same seed is sampled with budgets of 2 to "
        "100 denoiser calls by three samplers and compared with a "
        "converged solution (DPM-Solver++(3M), 200 calls). The distance falls "
        "quickly and then flattens: past that point more "
        "steps cost time without changing the picture, and a better sampler gets there with fewer calls.",
    )
    if not image_model(inp.model):
        view.skipped = f"the model makes samples of shape {tuple(inp.model.config.shape)}, not images"
        return view
    plt = pyplot()
    # every run side by side: one batched denoiser call per round instead of one call per run and step
    runs = [dict(sampler=REFERENCE[0], nfe=n) for n in (REFERENCE[1], REFERENCE[1] // 2)]
    runs += [dict(sampler=sampler, nfe=nfe) for sampler in STEP_SAMPLERS for nfe in STEP_NFES]
    ref, half, *rows = (
        img[0]
        for img in generate_together(inp.model, runs, prompts=inp.prompt, seed=inp.seed, device=inp.device)
    )
    distance = {
        sampler: [round(rms(img, ref), 4) for img in rows[k * len(STEP_NFES) : (k + 1) * len(STEP_NFES)]]
        for k, sampler in enumerate(STEP_SAMPLERS)
    }
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    axes[0].imshow(to_pil(make_grid(torch.stack(rows), nrow=len(STEP_NFES))), interpolation="nearest")
    cell = rows[0].shape[-1] + 1
    axes[0].set_xticks([(k + 0.5) * cell for k in range(len(STEP_NFES))])
    axes[0].set_xticklabels([str(n) for n in STEP_NFES])
    axes[0].set_yticks([(k + 0.5) * cell for k in range(len(STEP_SAMPLERS))])
    axes[0].set_yticklabels(STEP_SAMPLERS)
    axes[0].set_xlabel("denoiser calls (NFE)")
    for sampler in STEP_SAMPLERS:
        axes[1].loglog(STEP_NFES, distance[sampler], "o-", label=sampler)
    axes[1].set_xlabel("denoiser calls (NFE)")
    axes[1].set_ylabel("RMS distance to the converged image")
    axes[1].legend()
    view.figures.append(save_figure(fig, inp.out, "steps.png"))
    # where more steps stop helping: the first budget within one grey level (2/255 in [-1, 1]) RMS
    enough = {
        s: next((n for n, d in zip(STEP_NFES, distance[s]) if d < 2 / 255), None) for s in STEP_SAMPLERS
    }
    view.numbers = {
        "nfe": list(STEP_NFES),
        "distance": distance,
        "reference": list(REFERENCE),
        "reference_error": round(rms(half, ref), 5),  # ≥ the reference's own error (error falls with calls)
        "first_nfe_within_one_grey_level": enough,
        "seed": inp.seed,
    }
    return view
