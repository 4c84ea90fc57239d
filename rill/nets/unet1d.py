"""1D U-Net for signals ``(B, C, L)``: the shared U-Net core of ``unet.py`` with ``dims=1``.

Same blocks as the 2D net (residual blocks with GroupNorm + SiLU and FiLM from the noise / pooled / label
embedding); self-attention and text cross-attention are optional (off by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from rill.nets.layers import make_config
from rill.nets.unet import UNet, UNetConfig


@dataclass(frozen=True)
class UNet1DConfig(UNetConfig):
    in_channels: int = 1
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    mid_attn: bool = False
    length: int = 256  # signal length used to place attention; inputs must be divisible by 2**(levels-1)


class UNet1D(UNet):
    """1D U-Net: ``UNet1D(UNet1DConfig(...))``, ``UNet1D(channels=32)`` or both; config in ``net.config``."""

    kind = "unet1d"

    def __init__(self, config: UNet1DConfig | None = None, **overrides) -> None:
        cfg = make_config(UNet1DConfig, config, overrides)
        super().__init__(cfg, dims=1, size=cfg.length)
