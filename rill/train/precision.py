"""Mixed precision for the training loop, on torch's public AMP API: autocast for the forward pass and, for
fp16, a GradScaler (bf16 needs none). Kept here rather than in accelerate's process-wide state, so that runs
with different precisions can follow each other in one process."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..core.checks import check_choice

__all__ = ["Precision", "AMP_DTYPES"]

AMP_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """autocast() for the forward pass; scale / unscale_ / step around backward and the optimizer step."""

    def __init__(self, mode: str, device: torch.device) -> None:
        check_choice("mixed_precision", mode, AMP_DTYPES)
        self.dtype, self.device_type = AMP_DTYPES[mode], torch.device(device).type
        self.scaler = torch.amp.GradScaler(self.device_type) if mode == "fp16" else None

    @property
    def skips_bad_steps(self) -> bool:
        """fp16: the scaler itself skips steps whose gradients overflowed (then lowers the scale)."""
        return self.scaler is not None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scale(self, loss: Tensor) -> Tensor:
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscale_(self, opt) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opt) -> None:
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)
        self.scaler.update()
