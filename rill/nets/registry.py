"""The backbone registry: each backbone file registers its class, config, presets and the fields it needs
from a sample shape and the conditioning, once, with @register_net.

    net = build_net("unet2d", "tiny", num_classes=10)        # preset + overrides
    cfg = net_config(net)                                     # JSON-serialisable dict, with "kind"
    same = build_net(**cfg)                                   # rebuilt from JSON (then load_state_dict)
    fields = NETS["unet2d"].fields_for((3, 32, 32), CondSpec(token_dim=384, pooled_dim=384))

"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from rill.nets.layers import make_config

__all__ = ["CondSpec", "NetEntry", "NETS", "register_net", "get_config", "build_net", "net_config",
           "count_parameters", "preset_table"]  # fmt: skip


@dataclass(frozen=True)
class CondSpec:
    """What the conditioning gives a backbone (the widths of the cond dict's tensors)."""

    token_dim: int = 0  # width D of cond["tokens"] (B, L, D); 0 = no tokens (no cross-attention)
    pooled_dim: int = 0  # width of cond["pooled"] (B, D); 0 = none
    num_classes: int = 0  # class labels cond["labels"] (B,); 0 = none


@dataclass(frozen=True)
class NetEntry:
    cls: type[nn.Module]  # built as cls(config)
    config: type  # its frozen config dataclass
    presets: dict[str, Any]  # name -> config instance
    fields_for: Callable[[tuple[int, ...], CondSpec], dict[str, Any]]  # config fields implied by shape + cond


NETS: dict[str, NetEntry] = {}


def register_net(kind: str, config: type, presets: dict[str, Any]) -> Callable[[type], type]:
    """Class decorator: register a backbone under `kind`. The class defines a static fields_for(shape, cond)
    that returns the config fields a sample shape and a CondSpec imply (or raises a ValueError that names
    the shape it needs)."""

    def add(cls: type) -> type:
        if kind in NETS:
            raise ValueError(f"backbone {kind!r} is registered twice")
        cls.kind = kind
        NETS[kind] = NetEntry(cls, config, dict(presets), cls.fields_for)
        return cls

    return add


def _check_kind(kind: str) -> None:
    if kind not in NETS:
        raise ValueError(f"unknown net kind {kind!r}; allowed: {sorted(NETS)}")


def get_config(kind: str, preset: str | None = None, **overrides: Any) -> Any:
    """The resolved config for ``kind`` (+ ``preset``, + ``overrides``), without building the net."""
    _check_kind(kind)
    entry = NETS[kind]
    base = None
    if preset is not None:
        if preset not in entry.presets:
            raise ValueError(f"unknown {kind} preset {preset!r}; allowed: {sorted(entry.presets)}")
        base = entry.presets[preset]
    return make_config(entry.config, base, overrides)


def build_net(kind: str, preset: str | None = None, **overrides: Any) -> nn.Module:
    """Build a backbone: ``kind`` (a name in NETS), an optional named preset, field overrides.

    ``build_net(**net_config(net))`` rebuilds ``net`` (same architecture; load its state_dict for weights).
    """
    config = get_config(kind, preset, **overrides)
    return NETS[kind].cls(config)


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
    for kind in NETS:
        presets = NETS[kind].presets
        for name in presets:
            rows.append((kind, name, f"{count_parameters(build_net(kind, name)):,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
