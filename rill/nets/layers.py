"""Building blocks shared by every backbone (2D U-Net, 1D U-Net, MLP).

The convolutional blocks are dimension-agnostic: ``dims=1`` works on signals ``(B, C, L)`` and ``dims=2`` on
images ``(B, C, H, W)``; attention flattens the spatial axes into a token axis. Nothing here knows about
diffusion: the noise level arrives as an opaque ``c_noise`` number per sample.
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rill.core.checks import check_positive_int

Cond = dict[str, Tensor]

_CONVS: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}


def check_positive(cfg: object, name: str) -> None:
    check_positive_int(name, getattr(cfg, name), exact=True)


def make_config(config_cls: type, config: object | None, overrides: dict) -> object:
    """``config`` (or the class defaults) with ``overrides`` applied; unknown names raise a teaching error."""
    allowed = [f.name for f in fields(config_cls)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {config_cls.__name__} field(s) {unknown}; allowed: {allowed}")
    base = {f.name: getattr(config, f.name) for f in fields(config_cls)} if config is not None else {}
    return config_cls(**{**base, **overrides})


def conv_nd(dims: int, in_channels: int, out_channels: int, kernel_size: int, **kwargs) -> nn.Module:
    """A ``dims``-dimensional convolution (1 → Conv1d, 2 → Conv2d)."""
    if dims not in _CONVS:
        raise ValueError(f"dims={dims} is not supported; allowed: {sorted(_CONVS)}")
    return _CONVS[dims](in_channels, out_channels, kernel_size, **kwargs)


def zero_(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` in place (for output layers of residual branches) and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def norm_groups(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """Number of GroupNorm groups: up to 32, at least ``min_group_size`` channels per group, divides C."""
    groups = max(1, min(max_groups, channels // min_group_size))
    while channels % groups:
        groups -= 1
    return groups


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(channels), channels, eps=1e-6)


def num_heads(channels: int, head_dim: int) -> int:
    """Heads of width ~``head_dim`` that divide ``channels`` exactly (at least one)."""
    heads = max(1, channels // head_dim)
    while channels % heads:
        heads -= 1
    return heads


def _bcast(v: Tensor, ndim: int) -> Tensor:
    """(B, C) -> (B, C, 1, ...) with ``ndim`` dimensions in total."""
    return v.reshape(*v.shape, *(1,) * (ndim - v.ndim))


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, *S) -> (B, C·p^d, *S/p): fold p×…×p patches into channels (``pixel_unshuffle`` order for 2D)."""
    if p == 1:
        return x
    B, C, *S = x.shape
    d = len(S)
    x = x.reshape(B, C, *[v for s in S for v in (s // p, p)])  # (B, C, S1/p, p, S2/p, p, ...)
    x = x.permute(0, 1, *[3 + 2 * i for i in range(d)], *[2 + 2 * i for i in range(d)])
    return x.reshape(B, C * p**d, *[s // p for s in S])


def unpatchify(x: Tensor, p: int) -> Tensor:
    """Inverse of ``patchify``: (B, C·p^d, *S) -> (B, C, *S·p) (``pixel_shuffle`` order for 2D)."""
    if p == 1:
        return x
    B, Cp, *S = x.shape
    d = len(S)
    x = x.reshape(B, Cp // p**d, *[p] * d, *S)  # (B, C, p, ..., S1, ...)
    x = x.permute(0, 1, *[v for i in range(d) for v in (2 + d + i, 2 + i)])  # (B, C, S1, p, S2, p, ...)
    return x.reshape(B, Cp // p**d, *[s * p for s in S])


class FourierEmbedding(nn.Module):
    """``c_noise`` (B,) -> (B, dim) cos/sin features at fixed log-spaced frequencies (not learned, not saved).

    The frequencies span ``min_freq``..``max_freq`` cycles per unit of ``c_noise``, tuned for inputs of order
    one (EDM: ``c_noise = ln(σ)/4`` ∈ [-1.6, 1.1]). Rescale other parametrisations (e.g. VP timesteps t/1000)
    before calling the net.
    """

    def __init__(self, dim: int, min_freq: float = 0.05, max_freq: float = 8.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"FourierEmbedding dim must be even and >= 2, got {dim}")
        freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), dim // 2))
        self.register_buffer("freqs", 2 * math.pi * freqs, persistent=False)

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise.float()[:, None] * self.freqs.float()[None]  # (B, dim/2)
        return torch.cat([angles.cos(), angles.sin()], dim=1)  # (B, dim)


class CondEmbedding(nn.Module):
    """Global conditioning vector from the noise level, pooled text vector and class label -> (B, emb_dim).

    - noise: Fourier features + 2-layer MLP;
    - ``cond["pooled"]`` (B, pooled_dim): a linear projection is added (nothing is added when absent);
    - ``cond["labels"]`` (B,) long: a learned embedding is added; a missing key, or a negative label (e.g. -1,
      for classifier-free-guidance dropout), or the label ``num_classes`` selects the learned *null* class;
    - ``cond["augment"]`` (B, augment_dim): the training augmentation's label (non-leaky augmentation,
      Karras et al. 2022, App. B.5), projected without bias: its absence (sampling) is label 0, not augmented.

    The result is returned after SiLU, ready for the FiLM projections of the blocks (computed once per call).
    """

    def __init__(
        self, emb_dim: int, noise_features: int, pooled_dim: int = 0, num_classes: int = 0,
        augment_dim: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.num_classes = num_classes
        self.fourier = FourierEmbedding(noise_features)
        self.noise_mlp = nn.Sequential(
            nn.Linear(noise_features, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.pooled_proj = nn.Linear(pooled_dim, emb_dim) if pooled_dim else None
        self.label_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.augment_proj = nn.Linear(augment_dim, emb_dim, bias=False) if augment_dim else None

    def forward(self, c_noise: Tensor, cond: Cond | None, batch_size: int) -> Tensor:
        c_noise = torch.as_tensor(c_noise, device=self.fourier.freqs.device).reshape(-1)
        if c_noise.numel() == 1:
            c_noise = c_noise.expand(batch_size)
        if c_noise.shape[0] != batch_size:
            raise ValueError(
                f"c_noise must have shape ({batch_size},) or be a scalar, got {tuple(c_noise.shape)}"
            )
        emb = self.noise_mlp(self.fourier(c_noise).to(self.noise_mlp[0].weight.dtype))  # (B, E)
        cond = cond or {}
        if self.pooled_proj is not None and cond.get("pooled") is not None:
            emb = emb + self.pooled_proj(cond["pooled"].to(emb.dtype))
        if self.label_emb is not None:
            labels = cond.get("labels")
            if labels is None:
                idx = torch.full((batch_size,), self.num_classes, dtype=torch.long, device=emb.device)
            else:
                idx = labels.long().reshape(-1)
                idx = torch.where(idx < 0, self.num_classes, idx)
            emb = emb + self.label_emb(idx)
        if self.augment_proj is not None and cond.get("augment") is not None:
            emb = emb + self.augment_proj(cond["augment"].to(emb.dtype))
        return F.silu(emb)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv ×2 residual block with scale-shift (FiLM) conditioning on the embedding.

    ``h = conv2(drop(silu(norm2(conv1(silu(norm1(x)))) · (1 + scale) + shift)))``; conv2 is zero-initialised
    so the block starts as (a projection of) the identity.
    """

    def __init__(self, dims: int, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = conv_nd(dims, in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = zero_(conv_nd(dims, out_ch, out_ch, 3, padding=1))
        self.skip = conv_nd(dims, in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, *S)
        scale, shift = _bcast(self.film(emb), x.ndim).chunk(2, dim=1)  # (B, C_out, 1, ...) each
        h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the spatial positions of ``(B, C, *S)``, residual, zero-init output."""

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = num_heads(channels, head_dim)
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        B, C = x.shape[:2]
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        qkv = self.qkv(h).view(B, -1, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, N, C/heads)
        out = self.proj(out.transpose(1, 2).reshape(B, -1, C))  # (B, N, C)
        return x + out.transpose(1, 2).reshape(x.shape)


class CrossAttention(nn.Module):
    """Attention from spatial positions of ``(B, C, *S)`` to text tokens ``(B, L, D)``, with a padding mask.

    A learned *null token* is prepended to every context and never masked, so a row whose tokens are all
    padding (or a call without tokens at all) attends to it alone instead of producing NaN. Without tokens the
    result is computed directly (softmax over one key is 1), identical to passing an all-masked row.
    """

    def __init__(self, channels: int, context_dim: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = num_heads(channels, head_dim)
        self.context_dim = context_dim
        self.norm = group_norm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.null_token = nn.Parameter(torch.zeros(context_dim))
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        B, C = x.shape[:2]
        if context is None:  # only the null token: every position receives proj(v_null)
            v_null = self.kv(self.null_token)[C:]  # (C,)
            return x + _bcast(self.proj(v_null)[None], x.ndim)
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"cond['tokens'] must have shape (B, L, {self.context_dim}) "
                f"(context_dim={self.context_dim}), got {tuple(context.shape)}"
            )
        context = context.to(self.null_token.dtype)
        ctx = torch.cat([self.null_token.expand(B, 1, -1), context], dim=1)  # (B, L+1, D)
        kv = self.kv(ctx).view(B, ctx.shape[1], 2, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        q = self.q(h).view(B, -1, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, N, C/heads)
        attn_mask = None
        if mask is not None:  # True = real token; the null token is always attended to
            attn_mask = F.pad(mask.to(device=x.device, dtype=torch.bool), (1, 0), value=True)[:, None, None]
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=attn_mask)  # (B, heads, N, C/heads)
        out = self.proj(out.transpose(1, 2).reshape(B, -1, C))  # (B, N, C)
        return x + out.transpose(1, 2).reshape(x.shape)


class Downsample(nn.Module):
    """Stride-2 3-wide convolution: halves every spatial axis."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a 3-wide convolution."""

    def __init__(self, dims: int, channels: int) -> None:
        super().__init__()
        self.conv = conv_nd(dims, channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class PixelRefine(nn.Module):
    """A full-resolution output refinement for patch-folded backbones: after unpatchify, a small conv stack
    at full resolution sees the backbone's output and the net's input and adds a correction,

        out + conv_out(silu(norm(ResBlock(conv_in([out, x_in]), emb))))        conv_out zero-initialised,

    so a net that gains it computes exactly what it did before (a trained model can continue training with
    it). The ResBlock's FiLM from the noise embedding lets the correction depend on the noise level.
    Measurements and why: docs/clean-pictures.md."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, width: int, emb_dim: int) -> None:
        super().__init__()
        self.conv_in = conv_nd(dims, in_ch + out_ch, width, 3, padding=1)
        self.res = ResBlock(dims, width, width, emb_dim)
        self.norm = group_norm(width)
        self.conv_out = zero_(conv_nd(dims, width, out_ch, 3, padding=1))

    def forward(self, out: Tensor, x_in: Tensor, emb: Tensor) -> Tensor:
        h = self.conv_in(torch.cat([out, x_in.to(out.dtype)], dim=1))  # (B, width, *S)
        h = self.res(h, emb)
        return out + self.conv_out(F.silu(self.norm(h)))  # (B, C_out, *S)
