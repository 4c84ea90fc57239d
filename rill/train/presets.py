"""Named training presets, sized so that CPU training converges in minutes.

cfg = train_preset("digits", steps=500, **{"model.net_preset": "tiny"})   # preset + dotted overrides
"""

from __future__ import annotations

from typing import Any

from ..model.config import apply_overrides
from .config import TrainConfig, train_config_from_dict

__all__ = ["TRAIN_PRESETS", "train_preset"]

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # 8×8 grey digits, MiniLM tokens through cross-attention. 24 channels, batch 64, lr 5e-3, 50 warm-up
    # steps, then constant and a linear cooldown over the last 30% of the budget (`--minutes` lays it over the
    # time): chosen on the validation set (benchmarks/results/digits_recipe.md: at 10 minutes 16 channels
    # fell from FD 2.70 at 5 minutes to 4.06, 24 channels gave 2.99); guidance 1 by the sweep rule
    "digits": dict(
        data="digits", data_kwargs={"split": "train"}, steps=3000, batch_size=64, lr=5e-3, warmup_steps=50,
        lr_schedule="wsd", cooldown_fraction=0.3, ema_halflife_images=50_000,
        sample_every=1000, checkpoint_every=500, out_dir="runs/digits",
        model=dict(net="unet2d", net_preset="tiny", shape=(1, 8, 8), text_encoder="minilm", dataset="digits",
                   net_overrides={"channels": 24}, guidance=1.0),
    ),
    # 32×32 RGB shapes with colour / shape captions: 4×4 patches -> 8×8 -> 4×4, 48 channels (no narrower than
    # the 48 values of a patch); about 4× the images per second of "small" on a CPU. The EMA half-life is
    # capped by ema_rampup at 5% of the images seen. A linear cooldown over the last 30% of the budget (steps
    # or `--minutes`), as the bundled model had (its lr fell to 0 at step 17,500)
    "shapes": dict(
        data="shapes", steps=20_000, batch_size=128, lr=2e-3, warmup_steps=200, lr_schedule="wsd",
        cooldown_fraction=0.3, ema_halflife_images=50_000,
        sample_every=1000, checkpoint_every=250, out_dir="runs/shapes",
        model=dict(
            net="unet2d", net_preset="small", shape=(3, 32, 32), text_encoder="minilm", dataset="shapes",
            net_overrides={"patch_size": 4, "channels": 48, "channel_mult": (1, 2), "num_res_blocks": 1,
                           "attn_resolutions": (), "cross_attn_resolutions": (8, 4)},
            guidance=3.0,
        ),
    ),
    # 32×32 Noto Color Emoji with CLDR captions (rill.data.emoji), the train split (held-out pairs kept out).
    # The shapes U-Net layout with its full-resolution refinement head, trained with flow matching on
    # subject-balanced data (rare subjects' items repeated to 6): the bundled model's recipe, emoji-flow3 in
    # recipes/emoji.md (subject 99% against EDM's 26%; benchmarks/results/emoji_recipes.md has EDM vs flow).
    "emoji": dict(
        data="emoji", data_kwargs={"split": "train", "min_per_subject": 6}, steps=200_000, batch_size=128,
        lr=2e-3, warmup_steps=200, lr_schedule="wsd", cooldown_fraction=0.3, ema_halflife_images=50_000,
        sample_every=2000, checkpoint_every=250, out_dir="runs/emoji",
        model=dict(
            net="unet2d", net_preset="small", shape=(3, 32, 32), text_encoder="minilm", dataset="emoji",
            parametrisation="flow",
            net_overrides={"patch_size": 4, "channels": 48, "channel_mult": (1, 2), "num_res_blocks": 1,
                           "attn_resolutions": (), "cross_attn_resolutions": (8, 4), "refine_channels": 32},
            guidance=2.0,
        ),
    ),
    # 2D point clouds, unconditional residual MLP
    "points": dict(
        data="points:moons", steps=3000, batch_size=256, lr=2e-3, warmup_steps=100,
        ema_halflife_images=50_000,
        caption_dropout=0.0, sample_every=1000, checkpoint_every=1000, out_dir="runs/points",
        model=dict(net="mlp", net_preset="small", shape=(2,), text_encoder=None, dataset="points:moons",
                   guidance=1.0),
    ),
    # 1D signals ("a sine wave", ...), 1D U-Net conditioned on the pooled MiniLM caption vector
    "signals": dict(
        data="signals", steps=2000, batch_size=64, lr=1e-3, warmup_steps=100, ema_halflife_images=20_000,
        sample_every=1000, checkpoint_every=500, out_dir="runs/signals",
        model=dict(net="unet1d", net_preset="tiny", shape=(1, 64), text_encoder="minilm", dataset="signals",
                   guidance=2.0),
    ),
}  # fmt: skip


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset (see TRAIN_PRESETS) with dotted overrides applied, validated."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAIN_PRESETS)}")
    return train_config_from_dict(apply_overrides(TRAIN_PRESETS[name], overrides))
