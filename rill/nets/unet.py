"""U-Net backbones: a dimension-agnostic core (``UNet``) and the 2D image net ``UNet2D``.

``net(x_in, c_noise, cond=None) -> Tensor`` of the same shape as ``x_in``. The net knows nothing about
diffusion: ``c_noise`` (B,) is any per-sample number of order one (EDM: ln(σ)/4), embedded with Fourier
features.

Architecture (ADM-style, sized for CPUs): conv-in, then per resolution level ``num_res_blocks`` residual
blocks (GroupNorm + SiLU, FiLM from the embedding), optional self-attention and text cross-attention, a
stride-2 downsample; a middle block; the mirrored decoder with skip concatenation and one extra block per
level; and a zero-initialised GroupNorm-SiLU-conv output. The embedding is noise + projected pooled text +
class label. The 1D net (``unet1d.py``) is the same core with ``dims=1``.
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
    Downsample,
    PixelRefine,
    ResBlock,
    SelfAttention,
    Upsample,
    check_positive,
    conv_nd,
    group_norm,
    make_config,
    patchify,
    unpatchify,
    zero_,
)
from rill.nets.registry import CondSpec, register_net


@dataclass(frozen=True)
class UNetConfig:
    """Fields shared by the 2D and 1D U-Nets.

    Resolutions are feature-map sizes inside the net (e.g. 16 = the 16×16 maps); with ``patch_size`` p the
    first level works at size / p (p×p patches are folded into channels, a big saving on CPU).
    """

    in_channels: int = 3
    out_channels: int | None = None  # None -> in_channels
    channels: int = 64  # base width; level i has channels * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    patch_size: int = 1  # fold p×p input patches into channels before the first conv (pixel-unshuffle)
    attn_resolutions: tuple[int, ...] = ()  # self-attention at these feature-map sizes
    cross_attn_resolutions: tuple[int, ...] = ()  # text cross-attention at these sizes (needs context_dim)
    mid_attn: bool = True  # self-attention (and cross-attention if context_dim) in the middle block
    context_dim: int = 0  # width D of cond["tokens"]; 0 = no cross-attention
    pooled_dim: int = 0  # width of cond["pooled"]; 0 = ignored
    num_classes: int = 0  # 0 = no label embedding
    augment_dim: int = 0  # width of cond["augment"], the training augmentation's label; 0 = none
    head_dim: int = 32
    emb_dim: int | None = None  # None -> 4 * channels
    dropout: float = 0.0
    # width of a full-resolution output refinement after unpatchify (layers.PixelRefine: it sees the input
    # too, zero-initialised); 0 = none. For patch_size > 1 (the patch grid's speckle, docs/clean-pictures.md)
    refine_channels: int = 0

    @property
    def resolved_out_channels(self) -> int:
        return self.out_channels or self.in_channels

    @property
    def resolved_emb_dim(self) -> int:
        return self.emb_dim or 4 * self.channels

    def __post_init__(self) -> None:
        for name in ("channel_mult", "attn_resolutions", "cross_attn_resolutions"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name in ("in_channels", "channels", "num_res_blocks", "head_dim", "patch_size"):
            check_positive(self, name)
        for name in ("out_channels", "emb_dim"):
            if getattr(self, name) is not None:
                check_positive(self, name)
        for name in ("context_dim", "pooled_dim", "num_classes", "augment_dim", "refine_channels"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(
                f"channel_mult must be a non-empty tuple of positive ints, got {self.channel_mult}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cross_attn_resolutions and not self.context_dim:
            raise ValueError(
                f"cross_attn_resolutions={self.cross_attn_resolutions} needs context_dim > 0 (the width of "
                "cond['tokens']); set context_dim or cross_attn_resolutions=()"
            )


@dataclass(frozen=True)
class UNet2DConfig(UNetConfig):
    image_size: int = 32  # height = width of the training images; decides where attention goes


class UNetLayer(nn.Module):
    """One residual block, optionally followed by self-attention and text cross-attention."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, cfg: UNetConfig, attn: bool, cross: bool) -> None:
        super().__init__()
        self.res = ResBlock(dims, in_ch, out_ch, cfg.resolved_emb_dim, cfg.dropout)
        self.attn = SelfAttention(out_ch, cfg.head_dim) if attn else None
        self.cross = CrossAttention(out_ch, cfg.context_dim, cfg.head_dim) if cross else None

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None, mask: Tensor | None) -> Tensor:
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.cross is not None:
            x = self.cross(x, context, mask)
        return x


class UNet(nn.Module):
    """Dimension-agnostic U-Net core; use ``UNet2D`` (images) or ``UNet1D`` (signals)."""

    kind: str = "unet"

    def __init__(self, config: UNetConfig, dims: int, size: int) -> None:
        super().__init__()
        self.config = config
        self.dims = dims
        cfg = config
        levels, p = len(cfg.channel_mult), cfg.patch_size
        self.min_size = p * 2 ** (levels - 1)  # inputs must be divisible by this
        if size % self.min_size:
            raise ValueError(
                f"size {size} must be divisible by patch_size * 2**(len(channel_mult) - 1) = {self.min_size} "
                f"(patch_size={p}, channel_mult={cfg.channel_mult})"
            )
        sizes = [size // p // 2**i for i in range(levels)]
        for name in ("attn_resolutions", "cross_attn_resolutions"):
            bad = sorted(set(getattr(cfg, name)) - set(sizes))
            if bad:
                raise ValueError(f"{name} contains {bad}, but the feature-map sizes are {sizes}")
        ctx = cfg.context_dim > 0

        noise_features = max(16, cfg.channels - cfg.channels % 2)
        self.embed = CondEmbedding(
            cfg.resolved_emb_dim, noise_features, cfg.pooled_dim, cfg.num_classes, cfg.augment_dim
        )
        self.conv_in = conv_nd(dims, cfg.in_channels * p**dims, cfg.channels, 3, padding=1)

        ch = cfg.channels
        skip_chs = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.channel_mult):
            attn, cross = sizes[level] in cfg.attn_resolutions, sizes[level] in cfg.cross_attn_resolutions
            for _ in range(cfg.num_res_blocks):
                self.down.append(UNetLayer(dims, ch, cfg.channels * mult, cfg, attn, cross))
                ch = cfg.channels * mult
                skip_chs.append(ch)
            if level < levels - 1:
                self.down.append(Downsample(dims, ch))
                skip_chs.append(ch)

        self.mid = UNetLayer(dims, ch, ch, cfg, cfg.mid_attn, cfg.mid_attn and ctx)
        self.mid_res = ResBlock(dims, ch, ch, cfg.resolved_emb_dim, cfg.dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            attn, cross = sizes[level] in cfg.attn_resolutions, sizes[level] in cfg.cross_attn_resolutions
            out_ch = cfg.channels * cfg.channel_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(UNetLayer(dims, ch + skip_chs.pop(), out_ch, cfg, attn, cross))
                ch = out_ch
            if level > 0:
                self.up.append(Upsample(dims, ch))

        self.norm_out = group_norm(ch)
        self.conv_out = zero_(conv_nd(dims, ch, cfg.resolved_out_channels * p**dims, 3, padding=1))
        self.refine = None
        if cfg.refine_channels:
            self.refine = PixelRefine(
                dims, cfg.in_channels, cfg.resolved_out_channels, cfg.refine_channels, cfg.resolved_emb_dim
            )

    @property
    def skip_channels(self) -> list[int]:
        """Channels of each skip connection, in the order `encode` returns them, then the middle block's."""
        chs = [self.conv_in.out_channels]
        for layer in self.down:
            chs.append(
                layer.conv.out_channels if isinstance(layer, Downsample) else layer.res.conv1.out_channels
            )
        return [*chs, chs[-1]]

    def encode(
        self, x_in: Tensor, c_noise: Tensor, cond: Cond | None = None, add: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor], tuple[Tensor, Tensor | None, Tensor | None]]:
        """The encoder half: (middle-block output, skip tensors, (emb, context, mask)). `add` (same shape as
        the first feature map) is added after conv_in (a control branch's encoded control image)."""
        if x_in.ndim != self.dims + 2 or x_in.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects x_in of shape (B, {self.config.in_channels}, "
                f"{', '.join('*' * self.dims)}), got {tuple(x_in.shape)}"
            )
        if any(s % self.min_size for s in x_in.shape[2:]):
            raise ValueError(f"spatial size {tuple(x_in.shape[2:])} must be divisible by {self.min_size}")
        emb = self.embed(c_noise, cond, x_in.shape[0])  # (B, E)
        context = mask = None
        if self.config.context_dim and cond:
            context, mask = cond.get("tokens"), cond.get("mask")
            if context is None:
                mask = None

        h = self.conv_in(patchify(x_in, self.config.patch_size))  # (B, C, *S/p)
        if add is not None:
            h = h + add
        skips = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else layer(h, emb, context, mask)
            skips.append(h)
        h = self.mid_res(self.mid(h, emb, context, mask), emb)
        return h, skips, (emb, context, mask)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Cond | None = None) -> Tensor:
        """cond["control_residuals"] (optional): one tensor per skip connection and one for the middle
        block (shapes as `encode` gives them), added before the decoder uses them (ControlNet, Zhang et al.
        2023)."""
        h, skips, (emb, context, mask) = self.encode(x_in, c_noise, cond)
        residuals = cond.get("control_residuals") if cond else None
        if residuals is not None:
            if len(residuals) != len(skips) + 1:
                raise ValueError(
                    f"cond['control_residuals'] must hold {len(skips) + 1} tensors (one per skip connection "
                    f"and one for the middle block), got {len(residuals)}"
                )
            skips = [s + r for s, r in zip(skips, residuals)]
            h = h + residuals[-1]
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                h = layer(torch.cat([h, skips.pop()], dim=1), emb, context, mask)
        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, C_out·p^dims, *S/p)
        out = unpatchify(out, self.config.patch_size)  # (B, C_out, *S)
        return out if self.refine is None else self.refine(out, x_in, emb)


def _image_fields(shape: tuple[int, ...], cond: CondSpec) -> dict:
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"unet2d needs a square (C, H, W) sample shape, got model.shape={shape}")
    return {"in_channels": shape[0], "image_size": shape[1], **unet_cond_fields(cond)}


def unet_cond_fields(cond: CondSpec) -> dict:
    """Conditioning fields of a U-Net: token width for cross-attention (none: no cross-attention layers),
    pooled width and class count."""
    fields = {"context_dim": cond.token_dim, "pooled_dim": cond.pooled_dim, "num_classes": cond.num_classes}
    return fields if cond.token_dim else {**fields, "cross_attn_resolutions": ()}


_TEXT = {"context_dim": 384, "pooled_dim": 384}  # all-MiniLM-L6-v2 token / pooled width

UNET2D_PRESETS = {
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
}  # fmt: skip


@register_net("unet2d", UNet2DConfig, UNET2D_PRESETS)
class UNet2D(UNet):
    """2D U-Net for images ``(B, C, H, W)`` with text cross-attention, pooled-text and class conditioning.

    Build it from a config (``UNet2D(UNet2DConfig(...))``), from keywords (``UNet2D(channels=32, ...)``) or
    both (keywords override the config). The config is kept as ``net.config``.
    """

    kind = "unet2d"
    fields_for = staticmethod(_image_fields)

    def __init__(self, config: UNet2DConfig | None = None, **overrides) -> None:
        cfg = make_config(UNet2DConfig, config, overrides)
        super().__init__(cfg, dims=2, size=cfg.image_size)
