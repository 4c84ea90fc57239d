"""ControlNet-style control (Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion
Models", Eq. 2): a trainable copy of the U-Net encoder reads a control image; its outputs join the frozen base
through zero-initialised 1×1 convolutions, one per skip connection and one for the middle block:

    y_c = F(x; Θ) + Z(F(x + Z(c; Θ_z1); Θ_c); Θ_z2)        (the zero convolutions Z start at 0)

so a fresh branch changes nothing, and `scale` 0 is the base model exactly. The base backbone's only hook is
cond["control_residuals"] (rill.nets.unet.UNet.forward); `ControlledNet(base, branch, image, scale)` is a
backbone with the same call signature, which any parametrisation can wrap.

Control maps are derived from the data (CONTROL_MAPS): "layout" fills the box of every object of a shapes
scene (from the scene the renderer drew), "edges" is a Sobel edge map of any image. Maps are (1, H, W) in
[0, 1], white = object / edge.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nets.layers import conv_nd, patchify, zero_
from ..nets.unet import UNet

__all__ = ["CONTROL_KIND", "CONTROL_MAPS", "ControlBranch", "ControlledNet", "layout_map", "edge_map",
           "control_map", "check_control_image"]  # fmt: skip

CONTROL_KIND = "controlnet"


def layout_map(scene: Sequence[dict[str, Any]], size: int) -> Tensor:
    """(1, size, size): 1 inside the bounding box of every object of a placed shapes scene ("center",
    "extent" as fractions of the side), 0 elsewhere."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres
    out = torch.zeros(size, size)
    for o in scene:
        (x, y), e = o["center"], o["extent"]
        inside_x, inside_y = (c - x).abs() <= e, (c - y).abs() <= e
        out = torch.maximum(out, (inside_y[:, None] & inside_x[None, :]).float())
    return out[None]


def edge_map(image: Tensor, threshold: float = 0.25) -> Tensor:
    """(1, H, W) binary Sobel edges of a (C, H, W) image in [-1, 1] (gradient magnitude of the grey image
    above `threshold`)."""
    grey = image.float().mean(0, keepdim=True)[None]  # (1, 1, H, W)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 4
    k = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k)  # (1, 2, H, W)
    return (g.pow(2).sum(1).sqrt() > threshold).float()  # (1, H, W)


def _layout(image: Tensor, scene: Sequence[dict[str, Any]] | None) -> Tensor:
    if scene is None:
        raise ValueError(
            "control kind 'layout' needs the scene each image was drawn from (the shapes dataset); "
            "use --control edges for other data"
        )
    return layout_map(scene, image.shape[-1])


# kind -> map(image (C, H, W) in [-1, 1], scene or None) -> (1, H, W) in [0, 1]
CONTROL_MAPS: dict[str, Callable[[Tensor, Any], Tensor]] = {
    "layout": _layout,
    "edges": lambda image, scene=None: edge_map(image),
}


def control_map(kind: str, image: Tensor, scene: Any = None) -> Tensor:
    if kind not in CONTROL_MAPS:
        raise ValueError(f"control kind {kind!r} is not known; choose one of {list(CONTROL_MAPS)}")
    return CONTROL_MAPS[kind](image, scene)


def check_control_image(image: Tensor, channels: int, spatial: tuple[int, ...]) -> Tensor:
    """A control image as (N, channels, *spatial) float, or a one-line error naming the expected size."""
    if image.ndim == len(spatial) + 1:
        image = image[None]
    if image.ndim != len(spatial) + 2 or image.shape[1] != channels or tuple(image.shape[2:]) != spatial:
        want = "×".join(str(s) for s in spatial)
        raise ValueError(
            f"control image has shape {tuple(image.shape)}; this control branch needs {channels} channel(s) "
            f"at {want} (the model's image size): resize or redraw it at {want}"
        )
    return image.float()


class ControlBranch(nn.Module):
    """The trainable copy of a U-Net's encoder (initialised from the base), a small encoder of the control
    image whose last conv is zero, and one zero 1×1 conv per skip connection and for the middle block."""

    def __init__(self, base: UNet, control_channels: int = 1, hidden: int = 16) -> None:
        super().__init__()
        if not isinstance(base, UNet):
            raise TypeError(f"a control branch needs a U-Net backbone, got {type(base).__name__}")
        self.control_channels, self.dims = int(control_channels), base.dims
        self.patch_size = base.config.patch_size
        encoder = copy.deepcopy(base)
        for name in (
            "up",
            "norm_out",
            "conv_out",
        ):  # the decoder is not copied (ControlNet copies the encoder)
            delattr(encoder, name)
        self.encoder = encoder.requires_grad_(True)
        d, p = base.dims, self.patch_size
        self.hint = nn.Sequential(
            conv_nd(d, control_channels * p**d, hidden, 3, padding=1), nn.SiLU(),
            conv_nd(d, hidden, hidden, 3, padding=1), nn.SiLU(),
            zero_(conv_nd(d, hidden, base.conv_in.out_channels, 3, padding=1)),
        )  # fmt: skip
        self.zero_convs = nn.ModuleList(zero_(conv_nd(d, ch, ch, 1)) for ch in base.skip_channels)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: dict[str, Tensor] | None, control: Tensor) -> list:
        """Residuals for the base: one per skip connection, then the middle block's."""
        add = self.hint(patchify(control.to(x_in.dtype), self.patch_size))
        h, skips, _ = self.encoder.encode(x_in, c_noise, cond, add=add)
        return [z(t) for z, t in zip(self.zero_convs, [*skips, h])]


class ControlledNet(nn.Module):
    """A backbone with the base's call signature `net(x_in, c_noise, cond)`: the frozen `base` plus `scale` ×
    the residuals of `branch` for `control` (N, C, *S); N = 1 or the batch (repeated over a batch that is a
    multiple of N, e.g. the doubled batch of classifier-free guidance)."""

    def __init__(self, base: UNet, branch: ControlBranch, control: Tensor | None = None, scale: float = 1.0):
        super().__init__()
        self.base, self.branch, self.scale = base, branch, float(scale)
        self.config = base.config
        self.control = control

    def set_control(self, control: Tensor) -> None:
        self.control = check_control_image(control, self.branch.control_channels, self._spatial(control))

    def _spatial(self, control: Tensor) -> tuple[int, ...]:
        return tuple(control.shape[-self.branch.dims :])

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        if self.control is None:
            raise ValueError("ControlledNet has no control image: call set_control(image) first")
        control = check_control_image(self.control, self.branch.control_channels, tuple(x_in.shape[2:]))
        b, n = x_in.shape[0], control.shape[0]
        if b % n:
            raise ValueError(f"{n} control images for a batch of {b}: give 1 or one per image")
        control = control.to(x_in.device).repeat(b // n, *[1] * (control.ndim - 1))
        residuals = [self.scale * r for r in self.branch(x_in, c_noise, cond, control)]
        return self.base(x_in, c_noise, {**(cond or {}), "control_residuals": residuals})
