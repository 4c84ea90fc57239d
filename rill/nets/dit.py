"""Diffusion transformer backbone (Peebles & Xie 2023, "DiT"), with PixArt-α's text cross-attention (Chen et
al. 2023), for images ``(B, C, H, W)``.

``net(x_in, c_noise, cond=None) -> Tensor`` of the same shape as ``x_in``; like every backbone it knows
nothing of diffusion: ``c_noise`` (B,) is an opaque number of order one, embedded with Fourier features.

    patchify p×p -> linear -> + 2-D sin-cos positions                    (B, N, width),  N = (H/p)·(W/p)
    depth × block:  x += gate1 · SelfAttn(modulate(LN(x), shift1, scale1))          adaLN-Zero (DiT Sec. 3.2)
                    x += CrossAttn(x, text tokens)                                  PixArt-α Sec. 2.3
                    x += gate2 · MLP(modulate(LN(x), shift2, scale2))
    final: modulate(LN(x)) -> linear to p·p·C -> unpatchify
The (shift, scale, gate) of every block come from one conditioning vector c = embed(c_noise) + proj(pooled
text) (+ label). Every adaLN projection, the cross-attention output and the final linear start at zero, so a
fresh net returns 0 (its parametrisation then returns the skip path alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rill.nets.layers import (
    Cond,
    CondEmbedding,
    CrossAttention,
    PixelRefine,
    check_positive,
    make_config,
    patchify,
    unpatchify,
)
from rill.nets.layers import zero_ as zero_init
from rill.nets.registry import CondSpec, register_net

__all__ = ["DiT", "DiTConfig", "DIT_PRESETS", "sincos_2d"]


@dataclass(frozen=True)
class DiTConfig:
    in_channels: int = 3
    out_channels: int | None = None  # None -> in_channels
    image_size: int = 32  # height = width of the training images
    patch_size: int = 2  # p×p pixels per token
    width: int = 256  # token width
    depth: int = 6  # number of transformer blocks
    head_dim: int = 64  # heads = width / head_dim
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio · width
    context_dim: int = 0  # width D of cond["tokens"]; 0 = no cross-attention
    pooled_dim: int = 0  # width of cond["pooled"]; 0 = ignored
    num_classes: int = 0  # 0 = no label embedding
    noise_features: int = 256  # Fourier features of c_noise
    dropout: float = 0.0  # on the attention / MLP branches
    # width of a full-resolution output refinement after unpatchify (layers.PixelRefine, zero-initialised,
    # sees the input too); 0 = none (docs/clean-pictures.md)
    refine_channels: int = 0

    @property
    def resolved_out_channels(self) -> int:
        return self.out_channels or self.in_channels

    def __post_init__(self) -> None:
        for name in (
            "in_channels",
            "image_size",
            "patch_size",
            "width",
            "depth",
            "head_dim",
            "noise_features",
        ):
            check_positive(self, name)
        if self.out_channels is not None:
            check_positive(self, "out_channels")
        for name in ("context_dim", "pooled_dim", "num_classes", "refine_channels"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by patch_size {self.patch_size}"
            )
        if self.width % self.head_dim or self.width % 4:
            raise ValueError(
                f"width {self.width} must be divisible by head_dim {self.head_dim} and by 4 (the sin-cos "
                "positions)"
            )
        if self.noise_features % 2:
            raise ValueError(f"noise_features must be even, got {self.noise_features}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def sincos_2d(width: int, grid: int) -> Tensor:
    """Fixed 2-D sin-cos positions (grid², width): half the channels encode the row, half the column, each as
    sin/cos at frequencies 1/10000^(k/(width/4)) (MAE / DiT)."""
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float64) / (width // 4))  # (width/4,)
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")

    def embed(p: Tensor) -> Tensor:
        angles = p.reshape(-1, 1) * omega[None]  # (grid², width/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([embed(rows), embed(cols)], dim=1).float()  # (grid², width)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: LN(x)·(1 + scale) + shift, per sample (shift, scale: (B, width))."""
    return torch.addcmul(shift[:, None], x, 1 + scale[:, None])


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens (B, N, width) (no norm, no residual: the block adds both)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, N, C/heads)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block with optional text cross-attention (module docstring)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        w = cfg.width
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(w, w // cfg.head_dim)
        # text cross-attention (PixArt-α): queries from the tokens, keys/values from the text, zero-init out.
        # The shared CrossAttention works on (B, C, *S): the token axis is its one spatial axis.
        self.cross = CrossAttention(w, cfg.context_dim, cfg.head_dim) if cfg.context_dim else None
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        hidden = int(w * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(w, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, w))
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        # DiT Sec. 3.2 (adaLN-Zero): (shift, scale, gate) × 2 regressed from c, initialised to zero
        self.ada = zero_init(nn.Linear(w, 6 * w))

    def forward(self, x: Tensor, c: Tensor, context: Tensor | None, mask: Tensor | None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # (B, width) each
        x = x + gate1[:, None] * self.drop(self.attn(modulate(self.norm1(x), shift1, scale1)))
        if self.cross is not None:
            x = self.cross(x.transpose(1, 2), context, mask).transpose(1, 2)  # residual inside
        return x + gate2[:, None] * self.drop(self.mlp(modulate(self.norm2(x), shift2, scale2)))


def _image_fields(shape: tuple[int, ...], cond: CondSpec) -> dict:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"dit needs a square (C, H, W) sample shape, got model.shape={shape}")
    return {
        "in_channels": shape[0], "image_size": shape[1], "context_dim": cond.token_dim,
        "pooled_dim": cond.pooled_dim, "num_classes": cond.num_classes,
    }  # fmt: skip


_TEXT = {"context_dim": 384, "pooled_dim": 384}  # all-MiniLM-L6-v2 token / pooled width

DIT_PRESETS = {
    # 32×32 RGB on a CPU: 4×4 patches -> 64 tokens, 192 wide, 6 blocks
    "tiny": DiTConfig(
        image_size=32, patch_size=4, width=192, depth=6, head_dim=64, noise_features=192, **_TEXT
    ),
    # 32×32 RGB: 2×2 patches -> 256 tokens, 256 wide, 8 blocks (a few times the cost of "tiny")
    "small": DiTConfig(image_size=32, patch_size=2, width=256, depth=8, head_dim=64, **_TEXT),
    # 32×32 (or 64×64) RGB for a GPU: 2×2 patches, 384 wide, 12 blocks (DiT-S/2-sized)
    "base": DiTConfig(image_size=32, patch_size=2, width=384, depth=12, head_dim=64, **_TEXT),
}  # fmt: skip


@register_net("dit", DiTConfig, DIT_PRESETS)
class DiT(nn.Module):
    """Diffusion transformer for images ``(B, C, H, W)`` (module docstring). ``DiT(config, **overrides)``."""

    kind = "dit"
    fields_for = staticmethod(_image_fields)

    def __init__(self, config: DiTConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = self.config = make_config(DiTConfig, config, overrides)
        p, w = cfg.patch_size, cfg.width
        self.grid = cfg.image_size // p
        self.embed = CondEmbedding(w, cfg.noise_features, cfg.pooled_dim, cfg.num_classes)  # silu(c)
        self.patch_in = nn.Linear(cfg.in_channels * p * p, w)
        self.register_buffer("pos", sincos_2d(w, self.grid)[None], persistent=False)  # (1, N, width)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = zero_init(nn.Linear(w, 2 * w))
        self.patch_out = zero_init(nn.Linear(w, cfg.resolved_out_channels * p * p))
        self.refine = None
        if cfg.refine_channels:
            self.refine = PixelRefine(2, cfg.in_channels, cfg.resolved_out_channels, cfg.refine_channels, w)
        for block in self.blocks:  # DiT's init: Xavier-uniform linears, except the zero-initialised ones
            for lin in (block.attn.qkv, block.attn.proj, block.mlp[0], block.mlp[2]):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Cond | None = None) -> Tensor:
        cfg, p = self.config, self.config.patch_size
        if x_in.ndim != 4 or x_in.shape[1] != cfg.in_channels or x_in.shape[2:] != (cfg.image_size,) * 2:
            raise ValueError(
                f"DiT expects x_in of shape (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), "
                f"got {tuple(x_in.shape)}"
            )
        B = x_in.shape[0]
        c = self.embed(c_noise, cond, B)  # (B, width), after SiLU
        context = mask = None
        if cfg.context_dim and cond and cond.get("tokens") is not None:
            context, mask = cond["tokens"], cond.get("mask")
        h = patchify(x_in, p).flatten(2).transpose(1, 2)  # (B, N, C·p²)
        h = self.patch_in(h.to(self.patch_in.weight.dtype)) + self.pos.to(self.patch_in.weight.dtype)
        for block in self.blocks:
            h = block(h, c, context, mask)  # (B, N, width)
        shift, scale = self.ada_out(c).chunk(2, dim=1)
        out = self.patch_out(modulate(self.norm_out(h), shift, scale))  # (B, N, C_out·p²)
        out = out.transpose(1, 2).reshape(B, -1, self.grid, self.grid)  # (B, C_out·p², H/p, W/p)
        out = unpatchify(out, p)  # (B, C_out, H, W)
        return out if self.refine is None else self.refine(out, x_in, c)
