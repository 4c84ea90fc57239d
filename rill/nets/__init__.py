"""Backbones: ``net(x_in, c_noise, cond=None) -> Tensor`` (same shape as ``x_in``). No diffusion logic here.

- ``UNet2D`` images (B, C, H, W) with text cross-attention; ``UNet1D`` signals (B, C, L);
  ``MLP`` vectors (B, D)
- ``build_net(kind, preset, **overrides)``, ``PRESETS``, ``net_config(net)``, ``count_parameters(net)``
"""

from rill.nets.mlp import MLP, MLPConfig
from rill.nets.unet import UNet, UNet2D, UNet2DConfig, UNetConfig
from rill.nets.unet1d import UNet1D, UNet1DConfig

_PRESET_NAMES = ("NETS", "PRESETS", "build_net", "count_parameters", "get_config", "net_config")


def __getattr__(name: str):  # lazy, so that `python -m rill.nets.presets` runs without a runpy warning
    if name in _PRESET_NAMES:
        from rill.nets import presets

        return getattr(presets, name)
    raise AttributeError(f"module 'rill.nets' has no attribute {name!r}")


__all__ = [
    "MLP",
    "MLPConfig",
    "NETS",
    "PRESETS",
    "UNet",
    "UNet1D",
    "UNet1DConfig",
    "UNet2D",
    "UNet2DConfig",
    "UNetConfig",
    "build_net",
    "count_parameters",
    "get_config",
    "net_config",
]
