"""1D U-Net for signals ``(B, C, L)``: the shared U-Net core of ``unet.py`` with ``dims=1``.

Same blocks as the 2D net (residual blocks with GroupNorm + SiLU and FiLM from the noise / pooled / label
embedding); self-attention and text cross-attention are optional (off by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from rill.nets.layers import make_config
from rill.nets.registry import CondSpec, register_net
from rill.nets.unet import UNet, UNetConfig, unet_cond_fields


@dataclass(frozen=True)
class UNet1DConfig(UNetConfig):
    in_channels: int = 1
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    mid_attn: bool = False
    length: int = 256  # signal length used to place attention; inputs must be divisible by 2**(levels-1)


def _signal_fields(shape: tuple[int, ...], cond: CondSpec) -> dict:
    if len(shape) != 2:
        raise ValueError(f"unet1d needs a (C, L) sample shape, got model.shape={shape}")
    return {"in_channels": shape[0], "length": shape[1], **unet_cond_fields(cond)}


UNET1D_PRESETS = {
    "tiny": UNet1DConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, length=64),
    "small": UNet1DConfig(channels=48, channel_mult=(1, 2, 2, 2), num_res_blocks=2, length=256),
    "base": UNet1DConfig(
        channels=96, channel_mult=(1, 2, 2, 4), num_res_blocks=2, length=1024,
        attn_resolutions=(128,), mid_attn=True,
    ),
}  # fmt: skip


@register_net("unet1d", UNet1DConfig, UNET1D_PRESETS)
class UNet1D(UNet):
    """1D U-Net: ``UNet1D(UNet1DConfig(...))``, ``UNet1D(channels=32)`` or both; config in ``net.config``."""

    kind = "unet1d"
    fields_for = staticmethod(_signal_fields)

    def __init__(self, config: UNet1DConfig | None = None, **overrides) -> None:
        cfg = make_config(UNet1DConfig, config, overrides)
        super().__init__(cfg, dims=1, size=cfg.length)
