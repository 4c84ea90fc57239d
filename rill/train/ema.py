"""Exponential moving average of a network's weights, the decay given per step or as a half-life in images.

Half-life form (Karras et al. 2022, App. F "ema_halflife_kimg"): after a step of `batch` images,
    β = 0.5 ** (batch / h),  h = min(halflife_images, rampup · images_seen)  (ramp-up: early EMA stays fresh)
and θ_ema ← β·θ_ema + (1 − β)·θ. Averages are kept in float32 whatever the training dtype.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """EMA of `net.state_dict()` (floating tensors averaged, integer buffers copied)."""

    def __init__(
        self,
        net: nn.Module,
        decay: float | None = None,
        halflife_images: float | None = None,
        rampup: float | None = None,
    ) -> None:
        if (decay is None) == (halflife_images is None):
            raise ValueError(f"give exactly one of decay={decay!r} and halflife_images={halflife_images!r}")
        if decay is not None and not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        if halflife_images is not None and not halflife_images > 0:
            raise ValueError(f"EMA half-life must be > 0 images, got {halflife_images}")
        if rampup is not None and not rampup > 0:
            raise ValueError(f"EMA ramp-up ratio must be > 0 or None, got {rampup}")
        self.decay, self.halflife_images, self.rampup = decay, halflife_images, rampup
        self.shadow: dict[str, Tensor] = {
            k: (v.detach().float().clone() if v.is_floating_point() else v.detach().clone())
            for k, v in net.state_dict().items()
        }

    def beta(self, batch_images: int, images_seen: int) -> float:
        """The decay of one update after `batch_images` more images (`images_seen` counted after the step)."""
        if self.decay is not None:
            return self.decay
        h = self.halflife_images
        if self.rampup is not None:
            h = min(h, self.rampup * images_seen)
        return 0.5 ** (batch_images / max(h, 1e-8))

    @torch.no_grad()
    def update(self, net: nn.Module, batch_images: int, images_seen: int) -> float:
        """θ_ema ← β·θ_ema + (1 − β)·θ; returns β."""
        beta = self.beta(batch_images, images_seen)
        for k, v in net.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach().to(s.device, torch.float32), 1.0 - beta)
            else:
                s.copy_(v)
        return beta

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        missing, extra = sorted(set(self.shadow) - set(tensors)), sorted(set(tensors) - set(self.shadow))
        if missing or extra:
            raise ValueError(f"EMA state does not match the network: missing {missing}, unexpected {extra}")
        for k, v in tensors.items():
            if v.shape != self.shadow[k].shape:
                raise ValueError(
                    f"EMA tensor {k!r} has shape {tuple(v.shape)}, the network's is "
                    f"{tuple(self.shadow[k].shape)}"
                )
            self.shadow[k] = v.detach().to(self.shadow[k].device, self.shadow[k].dtype).clone()

    def to(self, device: torch.device | str) -> EMA:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def copy_to(self, net: nn.Module) -> nn.Module:
        """Load the averaged weights into `net` (cast to its dtypes) and return it."""
        ref = net.state_dict()
        net.load_state_dict({k: v.to(ref[k].device, ref[k].dtype) for k, v in self.shadow.items()})
        return net

    def averaged(self, net: nn.Module) -> nn.Module:
        """A deep copy of `net` holding the averaged weights."""
        return self.copy_to(copy.deepcopy(net))
