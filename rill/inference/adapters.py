"""Adapters at generation time: LoRA files (`FILE[:scale]`, several at once) merged for the duration of a
`with` block, and control branches seen through a wrapper model; the base model's fingerprint is checked
before anything is touched, and the model passed in comes back unchanged.

    with loras(model, ["pink.safetensors:0.8", "star.safetensors"]):
        images = generate(model, "a small pink circle in the center")
    images = generate(controlled(model, "layout.safetensors", "layout.png", scale=1.0), "a red circle ...")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..adapters.control import CONTROL_KIND, ControlBranch, ControlledNet, check_control_image
from ..adapters.lora import LORA_KIND, apply_loras
from ..core.parametrisations import get_parametrisation
from ..model.files import TensorGroup, load_group, net_fingerprint

__all__ = ["parse_adapter_spec", "load_lora", "loras", "control_branch", "read_control_image",
           "ControlledModel", "controlled"]  # fmt: skip


def parse_adapter_spec(spec: str) -> tuple[str, float]:
    """'FILE' -> (FILE, 1.0); 'FILE:0.5' -> (FILE, 0.5). A suffix that is not a number stays in the path."""
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def load_lora(path: str | Path, model: Any) -> TensorGroup:
    """A LoRA group file for `model`: refused (one line) when it was made for another base or is not LoRA."""
    group = load_group(path, model)
    if group.kind != LORA_KIND:
        raise ValueError(f"{path} holds a {group.kind!r} group, not a LoRA adapter (kind {LORA_KIND!r})")
    return group


@contextlib.contextmanager
def loras(model: Any, specs: Sequence[str | Path | tuple[str | Path | TensorGroup, float]]) -> Iterator[Any]:
    """Merge the adapters `specs` ('FILE[:scale]' strings, paths, or (file or group, scale) pairs) into
    `model` for the block; its weights come back bit for bit afterwards (rill.adapters.lora.apply_loras)."""
    adapters = []
    for spec in specs:
        if isinstance(spec, Path):
            spec = (spec, 1.0)
        source, scale = parse_adapter_spec(spec) if isinstance(spec, str) else spec
        group = source if isinstance(source, TensorGroup) else load_lora(source, model)
        group.check_fits(net_fingerprint(model), f"LoRA {getattr(source, 'name', source)}")
        adapters.append((group, float(scale)))
    with apply_loras(model, adapters):
        yield model


# --- control ------------------------------------------------------------------------------------------------
def control_branch(group: TensorGroup, model: Any) -> ControlBranch:
    """The ControlBranch a "controlnet" group holds, for `model` (its fingerprint checked)."""
    if group.kind != CONTROL_KIND:
        raise ValueError(f"tensor group {group.name!r} is a {group.kind!r}, not a control branch")
    group.check_fits(net_fingerprint(model), f"control branch {group.name!r}")
    meta = group.meta
    branch = ControlBranch(model.net, int(meta.get("control_channels", 1)), int(meta.get("hidden", 16)))
    branch.load_state_dict({k: v.to(model.device) for k, v in group.tensors.items()})
    return branch.to(model.device).eval().requires_grad_(False)


def read_control_image(path: str | Path, size: tuple[int, int], channels: int = 1) -> Tensor:
    """A control PNG (white = object / edge) as (1, channels, H, W) in [0, 1], at the model's size."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        arr = torch.from_numpy(np.array(img.convert("L" if channels == 1 else "RGB")))
    image = (arr.float() / 255).reshape(*arr.shape[:2], -1).permute(2, 0, 1)  # (C, H, W)
    try:
        return check_control_image(image, channels, tuple(size))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


class ControlledModel(nn.Module):
    """`model` seen through a control branch, for generate(): the same encode / config / device, a denoiser
    whose backbone is ControlledNet(model.net, branch, control, scale). The model itself is not changed."""

    def __init__(self, model: Any, branch: ControlBranch, control: Tensor, scale: float = 1.0) -> None:
        super().__init__()
        self.base = model
        spatial = tuple(model.config.shape[1:])
        control = check_control_image(control, branch.control_channels, spatial).to(model.device)
        self.net = ControlledNet(model.net, branch, control, scale)
        self.config = model.config
        precond = get_parametrisation(model.config.parametrisation).build(
            self.net, model.config.param_settings()
        )
        object.__setattr__(self, "_denoiser", precond)
        self.train(bool(model.training))  # generate() restores this mode: it must be the model's own

    def denoiser(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        return self._denoiser(x, sigma, cond)

    forward = denoiser

    def encode(self, prompts: list[str]) -> dict[str, Tensor] | None:
        return self.base.encode(prompts)

    @property
    def conditional(self) -> bool:
        return self.base.conditional

    @property
    def device(self) -> torch.device:
        return self.base.device


def controlled(model: Any, control: str | Path | TensorGroup, image: str | Path | Tensor, scale: float = 1.0):
    """`model` steered by a control branch (a group file or group) and a control image (a PNG or a tensor
    (1, H, W) in [0, 1]); pass the result to generate(). scale 0 gives the base model's images exactly."""
    group = control if isinstance(control, TensorGroup) else load_group(control, model)
    branch = control_branch(group, model)
    if not isinstance(image, Tensor):
        image = read_control_image(image, tuple(model.config.shape[1:]), branch.control_channels)
    return ControlledModel(model, branch, image, scale)
