"""Residual MLP backbone for vectors ``(B, D)`` (e.g. 2D points), with noise / pooled / label conditioning.

``net(x_in, c_noise, cond=None) -> Tensor`` of the same shape as ``x_in``. Inputs with more trailing axes
(``(B, *shape)`` with ``prod(shape) == dim``) are flattened and reshaped back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rill.nets.layers import Cond, CondEmbedding, check_positive, make_config, zero_
from rill.nets.registry import CondSpec, register_net


@dataclass(frozen=True)
class MLPConfig:
    dim: int = 2  # input = output width
    hidden: int = 256
    num_blocks: int = 4
    expansion: int = 2  # inner width of each block = expansion * hidden
    emb_dim: int | None = None  # None -> hidden
    noise_features: int = 64
    pooled_dim: int = 0  # width of cond["pooled"]; 0 = ignored
    num_classes: int = 0  # 0 = no label embedding
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "num_blocks", "expansion", "noise_features"):
            check_positive(self, name)
        if self.emb_dim is not None:
            check_positive(self, "emb_dim")
        if self.noise_features % 2:
            raise ValueError(f"noise_features must be even, got {self.noise_features}")
        for name in ("pooled_dim", "num_classes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def resolved_emb_dim(self) -> int:
        return self.emb_dim or self.hidden


class MLPBlock(nn.Module):
    """Pre-norm residual block ``x + W2(drop(silu(W1(LN(x) · (1 + scale) + shift))))``; W2 starts at zero."""

    def __init__(self, hidden: int, inner: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(emb_dim, 2 * hidden)
        self.fc1 = nn.Linear(hidden, inner)
        self.act = nn.SiLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc2 = zero_(nn.Linear(inner, hidden))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb).chunk(2, dim=1)  # (B, hidden) each
        h = torch.addcmul(shift, self.norm(x), 1 + scale)
        return x + self.fc2(self.dropout(self.act(self.fc1(h))))


def _vector_fields(shape: tuple[int, ...], cond: CondSpec) -> dict:
    """Any sample shape, flattened; no tokens (the MLP reads the pooled vector and labels only)."""
    return {"dim": math.prod(shape), "pooled_dim": cond.pooled_dim, "num_classes": cond.num_classes}


MLP_PRESETS = {
    "tiny": MLPConfig(hidden=128, num_blocks=3),
    "small": MLPConfig(hidden=256, num_blocks=4),
    "base": MLPConfig(hidden=512, num_blocks=6),
}


@register_net("mlp", MLPConfig, MLP_PRESETS)
class MLP(nn.Module):
    """Residual MLP; ``MLP(MLPConfig(...))``, ``MLP(dim=2, hidden=128)`` or both. Config in ``net.config``."""

    kind = "mlp"
    fields_for = staticmethod(_vector_fields)

    def __init__(self, config: MLPConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = make_config(MLPConfig, config, overrides)
        self.config = cfg
        emb_dim = cfg.resolved_emb_dim
        self.embed = CondEmbedding(emb_dim, cfg.noise_features, cfg.pooled_dim, cfg.num_classes)
        self.proj_in = nn.Linear(cfg.dim, cfg.hidden)
        inner = cfg.expansion * cfg.hidden
        self.blocks = nn.ModuleList(
            MLPBlock(cfg.hidden, inner, emb_dim, cfg.dropout) for _ in range(cfg.num_blocks)
        )
        self.norm_out = nn.LayerNorm(cfg.hidden)
        self.proj_out = zero_(nn.Linear(cfg.hidden, cfg.dim))

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Cond | None = None) -> Tensor:
        x = x_in.reshape(x_in.shape[0], -1)  # (B, D)
        if x.shape[1] != self.config.dim:
            raise ValueError(f"MLP expects x_in of shape (B, {self.config.dim}), got {tuple(x_in.shape)}")
        emb = self.embed(c_noise, cond, x.shape[0])  # (B, E)
        h = self.proj_in(x)  # (B, hidden)
        for block in self.blocks:
            h = block(h, emb)
        return self.proj_out(self.norm_out(h)).reshape(x_in.shape)
