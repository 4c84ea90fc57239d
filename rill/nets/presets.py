"""Typed configs, named presets and a factory for the backbones.

    net = build_net("unet2d", "tiny", num_classes=10)        # preset + overrides
    cfg = net_config(net)                                     # JSON-serialisable dict, with "kind"
    same = build_net(**cfg)                                   # rebuilt from JSON (then load_state_dict)

``python -m rill.nets.presets`` prints the parameter count of every preset.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from rill.nets.layers import make_config
from rill.nets.mlp import MLP, MLPConfig
from rill.nets.unet import UNet2D, UNet2DConfig
from rill.nets.unet1d import UNet1D, UNet1DConfig

NetConfig = UNet2DConfig | UNet1DConfig | MLPConfig

NETS: dict[str, tuple[type[nn.Module], type]] = {
    "unet2d": (UNet2D, UNet2DConfig),
    "unet1d": (UNet1D, UNet1DConfig),
    "mlp": (MLP, MLPConfig),
}

_TEXT = {"context_dim": 384, "pooled_dim": 384}  # all-MiniLM-L6-v2 token / pooled width

PRESETS: dict[str, dict[str, NetConfig]] = {
    "unet2d": {
        # 8×8 grey digits, trained in minutes on a CPU: 8 -> 4 (text cross-attention in the 4×4 middle block)
        "tiny": UNet2DConfig(
            in_channels=1, image_size=8, channels=32, channel_mult=(1, 2), num_res_blocks=1, emb_dim=64,
            attn_resolutions=(), cross_attn_resolutions=(), **_TEXT,
        ),
        # 32×32 RGB shapes: 2×2 patches (4× fewer FLOPs than full resolution), then 16 -> 8 -> 4
        "small": UNet2DConfig(
            in_channels=3, image_size=32, patch_size=2, channels=32, channel_mult=(1, 2, 2), num_res_blocks=2,
            attn_resolutions=(8,), cross_attn_resolutions=(8, 4), **_TEXT,
        ),
        # 32×32 (or larger) RGB at full resolution, for a GPU: 32 -> 16 -> 8 -> 4
        "base": UNet2DConfig(
            in_channels=3, image_size=32, channels=96, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
            attn_resolutions=(16, 8), cross_attn_resolutions=(16, 8), **_TEXT,
        ),
    },
    "unet1d": {
        "tiny": UNet1DConfig(channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, length=64),
        "small": UNet1DConfig(channels=48, channel_mult=(1, 2, 2, 2), num_res_blocks=2, length=256),
        "base": UNet1DConfig(
            channels=96, channel_mult=(1, 2, 2, 4), num_res_blocks=2, length=1024,
            attn_resolutions=(128,), mid_attn=True,
        ),
    },
    "mlp": {
        "tiny": MLPConfig(hidden=128, num_blocks=3),
        "small": MLPConfig(hidden=256, num_blocks=4),
        "base": MLPConfig(hidden=512, num_blocks=6),
    },
}  # fmt: skip


def _check_kind(kind: str) -> None:
    if kind not in NETS:
        raise ValueError(f"unknown net kind {kind!r}; allowed: {sorted(NETS)}")


def get_config(kind: str, preset: str | None = None, **overrides: Any) -> NetConfig:
    """The resolved config for ``kind`` (+ ``preset``, + ``overrides``), without building the net."""
    _check_kind(kind)
    cfg_cls = NETS[kind][1]
    base = None
    if preset is not None:
        if preset not in PRESETS[kind]:
            raise ValueError(f"unknown {kind} preset {preset!r}; allowed: {sorted(PRESETS[kind])}")
        base = PRESETS[kind][preset]
    return make_config(cfg_cls, base, overrides)


def build_net(kind: str, preset: str | None = None, **overrides: Any) -> nn.Module:
    """Build a backbone: ``kind`` ∈ {"unet2d", "unet1d", "mlp"}, an optional named preset, field overrides.

    ``build_net(**net_config(net))`` rebuilds ``net`` (same architecture; load its state_dict for weights).
    """
    config = get_config(kind, preset, **overrides)
    return NETS[kind][0](config)


def net_config(net: nn.Module) -> dict[str, Any]:
    """JSON-serialisable description of ``net``: ``{"kind": ..., **fields}`` (tuples become lists)."""
    kind = getattr(net, "kind", None)
    if kind not in NETS or not dataclasses.is_dataclass(getattr(net, "config", None)):
        raise ValueError(f"{type(net).__name__} is not a rill backbone (allowed kinds: {sorted(NETS)})")
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(net.config).items()}
    return {"kind": kind, **fields}


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def preset_table() -> str:
    """A text table: kind, preset, parameter count, for every preset."""
    rows = [("kind", "preset", "params")]
    for kind, presets in PRESETS.items():
        for name in presets:
            rows.append((kind, name, f"{count_parameters(build_net(kind, name)):,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    print(preset_table())


if __name__ == "__main__":
    main()
