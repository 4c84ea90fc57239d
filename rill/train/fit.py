"""Fit a model config to the images of a folder dataset: the sample shape follows the images, and the 2D
U-Net's attention stays at the same levels (a preset made for 32×32 with cross-attention at 8 and 4 gets it at
16 and 8 for 64×64), so `rill train --data folder:PATH` works at any `--image-size` the net can divide."""

from __future__ import annotations

from ..model.config import ModelConfig, config_to_dict, model_config_from_dict
from ..nets.registry import get_config

__all__ = ["fit_model_to_images", "size_step"]

_RESOLUTIONS = ("attn_resolutions", "cross_attn_resolutions")


def _net_fields(model: ModelConfig):
    over = {k: v for k, v in model.net_overrides.items() if k not in ("in_channels", "image_size")}
    return get_config(model.net, model.net_preset, **over)


def size_step(model: ModelConfig) -> int:
    """Image sizes the config's 2D U-Net can take are the multiples of this (patch_size · 2^(levels − 1))."""
    net = _net_fields(model)
    return net.patch_size * 2 ** (len(net.channel_mult) - 1)


def fit_model_to_images(model: ModelConfig, shape: tuple[int, ...]) -> tuple[ModelConfig, str]:
    """`model` with shape = `shape` (C, S, S) and its attention resolutions moved to the same net levels at S;
    returns (the new config, a one-line note of what changed). ValueError if the net cannot take size S."""
    if model.net != "unet2d":
        raise ValueError(f"image folders train a 2D U-Net (model.net='unet2d'), not model.net={model.net!r}")
    old, new = int(model.shape[-1]), int(shape[-1])
    net, step = _net_fields(model), size_step(model)
    if new % step:
        lo, hi = max(step, new - new % step), new - new % step + step
        raise ValueError(
            f"image size {new} does not fit this net (patch_size {net.patch_size}, {len(net.channel_mult)} "
            f"levels: the size must be a multiple of {step}); use --image-size {lo} or {hi}"
        )
    levels = range(len(net.channel_mult))
    before = [old // net.patch_size // 2**i for i in levels]
    after = [new // net.patch_size // 2**i for i in levels]
    overrides = dict(model.net_overrides)
    for name in _RESOLUTIONS:
        overrides[name] = tuple(after[before.index(r)] for r in getattr(net, name) if r in before)
    fitted = model_config_from_dict(
        {**config_to_dict(model), "shape": tuple(shape), "net_overrides": overrides}
    )
    moved = ", ".join(f"{n} {getattr(net, n)} -> {overrides[n]}" for n in _RESOLUTIONS if getattr(net, n))
    note = f"model fitted to the images: shape {tuple(model.shape)} -> {tuple(shape)}" + (
        f" ({moved})" if moved else ""
    )
    return fitted, note
