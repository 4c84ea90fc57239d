"""Tiny models shared by the tests (not collected: the name starts with an underscore)."""

from __future__ import annotations

import torch

from rill.model import DiffusionModel, ModelConfig


def tiny_digits_model(seed: int = 0, scale: float = 0.2, **config) -> DiffusionModel:
    """A tiny class-conditioned 8×8 model with random weights everywhere (the output conv of a fresh net is
    zero-initialised, which makes the prompt irrelevant: re-draw every parameter so the prompt matters)."""
    model = DiffusionModel(
        ModelConfig(
            net="unet2d",
            net_preset="tiny",
            shape=(1, 8, 8),
            text_encoder="digits",
            net_overrides={"channels": 16},
            **config,
        )
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()
