"""Backbones: ``net(x_in, c_noise, cond=None) -> Tensor`` (same shape as ``x_in``). No diffusion logic here.

- ``UNet2D`` images (B, C, H, W) with text cross-attention; ``DiT`` the same with a transformer (adaLN-Zero,
  PixArt-style cross-attention); ``UNet1D`` signals (B, C, L); ``MLP`` vectors (B, D)
- a new backbone is one file whose class is decorated with ``@register_net(kind, Config, presets)`` (and one
  import below); ``build_net(kind, preset, **overrides)``, ``NETS``, ``net_config(net)``, ``count_parameters``
"""

from rill.nets.dit import DiT, DiTConfig
from rill.nets.mlp import MLP, MLPConfig
from rill.nets.registry import (
    NETS,
    CondSpec,
    build_net,
    count_parameters,
    get_config,
    net_config,
    preset_table,
    register_net,
)
from rill.nets.unet import UNet, UNet2D, UNet2DConfig, UNetConfig
from rill.nets.unet1d import UNet1D, UNet1DConfig

__all__ = ["DiT", "DiTConfig", "MLP", "MLPConfig", "NETS", "CondSpec", "UNet", "UNet1D", "UNet1DConfig",
           "UNet2D", "UNet2DConfig", "UNetConfig", "build_net", "count_parameters", "get_config",
           "net_config", "preset_table", "register_net"]  # fmt: skip
