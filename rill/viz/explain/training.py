"""Training: one seed drawn by each of a run's saved checkpoints (how the model learned)."""

from __future__ import annotations

import torch

from ...inference.generate import generate
from ...model.files import load_model
from ..images import make_grid, to_pil
from ._common import Inputs, View, image_model, pyplot, rms, save_figure

__all__ = ["training"]


def training(inp: Inputs) -> View:
    view = View(
        "training",
        "Training: how the model learned",
        "The same seed and prompt are drawn by every checkpoint "
        "the run saved, from the earliest to the final "
        "model. The distance to the final model's image shrinks as training goes on: early checkpoints draw "
        "blurry averages, later ones the prompted picture.",
    )
    if not inp.checkpoints:
        view.skipped = (
            "the model is not a training run's folder with saved checkpoints (pass --model RUN_DIR)"
        )
        return view
    if not image_model(inp.model):
        view.skipped = f"the model makes samples of shape {tuple(inp.model.config.shape)}, not images"
        return view
    plt = pyplot()
    encoder = inp.model.load_text_encoder()
    kw = dict(nfe=inp.nfe, seed=inp.seed)
    final = generate(inp.model, inp.prompt, device=inp.device, **kw)[0]
    steps, images, distance = [], [], []
    for step, path in inp.checkpoints:
        model = load_model(path, device=inp.device, text_encoder=encoder)
        img = generate(model, inp.prompt, **kw)[0]
        steps.append(int(step))
        images.append(img)
        distance.append(round(rms(img, final), 4))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), gridspec_kw={"width_ratios": [2, 1]})
    axes[0].imshow(
        to_pil(make_grid(torch.stack(images + [final]), nrow=len(images) + 1)), interpolation="nearest"
    )
    cell = images[0].shape[-1] + 1
    axes[0].set_xticks([(k + 0.5) * cell for k in range(len(images) + 1)])
    axes[0].set_xticklabels([str(s) for s in steps] + ["final"])
    axes[0].set_yticks([])
    axes[0].set_xlabel("training step of the checkpoint")
    axes[1].plot(steps, distance, "o-")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("RMS distance to the final model's image")
    view.figures.append(save_figure(fig, inp.out, "training.png"))
    view.numbers = {"step": steps, "distance_to_final": distance, "seed": inp.seed}
    return view
