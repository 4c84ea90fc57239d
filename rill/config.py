"""Typed configs for a model and a training run, named presets, and JSON in / out.

    cfg = train_preset("digits", steps=500, **{"model.net_preset": "tiny"})   # preset + dotted overrides
    print(config_to_json(cfg))                                                 # what --dry-run prints
    same = train_config_from_dict(json.loads(config_to_json(cfg)))

A `ModelConfig` is everything needed to rebuild a trained model from its weights (it travels inside the
.safetensors metadata); a `TrainConfig` adds everything about the run. Presets are sized so that CPU training
converges in minutes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "PARAMETRISATIONS",
    "TRAIN_PRESETS",
    "train_preset",
    "apply_overrides",
    "config_to_json",
    "model_config_from_dict",
    "train_config_from_dict",
]

PARAMETRISATIONS = ("edm", "epsilon", "v")
MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine", "cooldown")
NET_KINDS = ("unet2d", "unet1d", "mlp")


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _check_range(name: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok or (isinstance(value, float) and math.isnan(value)):
        bracket = "(" if lo_open else "["
        raise ValueError(f"{name}={value!r} must be in {bracket}{lo}, {hi}]")


@dataclass
class ModelConfig:
    """A diffusion model = backbone + parametrisation + conditioning. JSON-able; stored with the weights."""

    net: str = "unet2d"  # backbone kind: unet2d | unet1d | mlp
    net_preset: str | None = "tiny"  # rill.nets preset (None = the kind's defaults)
    net_overrides: dict[str, Any] = field(default_factory=dict)  # fields on top of the preset
    shape: tuple[int, ...] = (1, 8, 8)  # one sample, e.g. (C, H, W)
    sigma_data: float = 0.5  # std of the data (EDM preconditioning)
    parametrisation: str = "edm"  # edm (EDMPrecond) | epsilon | v (VPAdapter over a discrete VP schedule)
    vp_schedule: str = "cosine"  # beta schedule for epsilon / v (rill.schedules.vp_betas kinds)
    vp_timesteps: int = 1000
    text_encoder: str | dict[str, Any] | None = (
        "minilm"  # name or encoder.spec; "digits"/"class:a,b" = labels
    )
    cfg_dropout: float = 0.1  # caption dropout used in training (for the record; recorded by train())
    dataset: str = ""  # data spec it was trained on (for the record)
    sigma_min: float | None = None  # recommended sampling range; None = 0.002 / 80 (edm) or the VP schedule's
    sigma_max: float | None = None
    guidance: float = 2.0  # recommended classifier-free guidance scale

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        _check_choice("model.net", self.net, NET_KINDS)
        _check_choice("model.parametrisation", self.parametrisation, PARAMETRISATIONS)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"model.shape must be a non-empty tuple of positive ints, got {self.shape}")
        _check_range("model.sigma_data", self.sigma_data, 0.0, math.inf, lo_open=True)
        _check_range("model.cfg_dropout", self.cfg_dropout, 0.0, 1.0)
        if int(self.vp_timesteps) != self.vp_timesteps or self.vp_timesteps < 2:
            raise ValueError(f"model.vp_timesteps must be an integer >= 2, got {self.vp_timesteps!r}")
        if not isinstance(self.net_overrides, dict):
            raise ValueError(f"model.net_overrides must be a dict, got {type(self.net_overrides).__name__}")
        if self.sigma_min is None or self.sigma_max is None:
            lo, hi = self._default_sigma_range()
            self.sigma_min = lo if self.sigma_min is None else self.sigma_min
            self.sigma_max = hi if self.sigma_max is None else self.sigma_max
        if not 0 < self.sigma_min < self.sigma_max < math.inf:
            raise ValueError(
                f"need 0 < model.sigma_min < model.sigma_max < inf, got {self.sigma_min}, {self.sigma_max}"
            )

    def _default_sigma_range(self) -> tuple[float, float]:
        if self.parametrisation == "edm":
            return 0.002, 80.0
        s = self.vp_schedule_obj().sigmas
        return float(s[0]), float(s[-1])

    def vp_schedule_obj(self):
        """The discrete VP schedule of the epsilon / v parametrisations."""
        from .schedules import VPSchedule

        return VPSchedule.make(self.vp_schedule, self.vp_timesteps)


@dataclass
class TrainConfig:
    """One training run. `steps` and/or `minutes` stop it (whichever comes first)."""

    data: str = "digits"  # rill.data.load_dataset spec
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int | None = 2000
    minutes: float | None = None
    batch_size: int = 64  # global batch (split over processes)
    lr: float = 1e-3
    lr_schedule: str = "constant"  # after warm-up: constant | cosine (to 0 at `steps`) | cooldown (below)
    cooldown_steps: int = 0  # "cooldown": constant, then linear to 0 over the last cooldown_steps
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max global grad norm; None = off
    ema_decay: float | None = None  # fixed per-step decay, or ...
    ema_halflife_images: float | None = 20_000.0  # ... half-life in images (Karras et al. 2022, App. F)
    ema_rampup: float | None = 0.05  # half-life ≤ rampup · images seen (EDM's ema_rampup_ratio)
    caption_dropout: float = 0.1  # captions replaced by "" (the unconditional embedding)
    min_snr_gamma: float | None = 5.0  # epsilon / v only (Hang et al. 2023); None = unweighted
    p_mean: float = -1.2  # EDM training σ: ln σ ~ N(p_mean, p_std²) (Karras et al. 2022, Table 1)
    p_std: float = 1.2
    mixed_precision: str = "no"  # no | bf16 | fp16 (autocast where the device supports it)
    seed: int = 0
    out_dir: str = "runs/digits"
    sample_every: int = 500  # preview grid PNG every N steps (0 = never)
    checkpoint_every: int = 500  # 0 = only at the end / on interrupt
    keep_last: int = 3  # checkpoints kept
    log_every: int = 50
    preview_prompts: list[str] | None = None  # None = the first distinct captions of the data
    num_threads: int | None = None  # torch.set_num_threads; None = leave as is
    cpu: bool = False  # force the CPU even when an accelerator is present

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = model_config_from_dict(self.model)
        self.betas = tuple(float(b) for b in self.betas)
        if self.steps is None and self.minutes is None:
            raise ValueError("set steps or minutes (or both): a run needs a stop criterion")
        if self.steps is not None and (int(self.steps) != self.steps or self.steps < 1):
            raise ValueError(f"steps must be a positive integer or None, got {self.steps!r}")
        if self.minutes is not None:
            _check_range("minutes", self.minutes, 0.0, math.inf, lo_open=True)
        for name in ("batch_size", "log_every"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "cooldown_steps", "sample_every", "checkpoint_every", "keep_last"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if self.keep_last < 1:
            raise ValueError(
                f"keep_last must be >= 1 (the last good checkpoint is always kept), got {self.keep_last}"
            )
        _check_range("lr", self.lr, 0.0, math.inf, lo_open=True)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.lr_schedule == "cooldown":
            if self.steps is None or not 0 < self.cooldown_steps <= self.steps - self.warmup_steps:
                raise ValueError(
                    "lr_schedule 'cooldown' decays to 0 at `steps`: it needs --steps and "
                    f"0 < cooldown_steps <= steps - warmup_steps (got steps={self.steps}, "
                    f"cooldown_steps={self.cooldown_steps}, warmup_steps={self.warmup_steps})"
                )
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        _check_range("weight_decay", self.weight_decay, 0.0, math.inf)
        _check_range("caption_dropout", self.caption_dropout, 0.0, 1.0)
        if self.grad_clip is not None:
            _check_range("grad_clip", self.grad_clip, 0.0, math.inf, lo_open=True)
        if self.ema_decay is not None:
            _check_range("ema_decay", self.ema_decay, 0.0, 1.0)
        if self.ema_halflife_images is not None:
            _check_range("ema_halflife_images", self.ema_halflife_images, 0.0, math.inf, lo_open=True)
        if self.min_snr_gamma is not None:
            _check_range("min_snr_gamma", self.min_snr_gamma, 0.0, math.inf, lo_open=True)
        _check_range("p_std", self.p_std, 0.0, math.inf, lo_open=True)

    @property
    def objective(self) -> str:
        """The training objective follows the parametrisation: edm → EDM loss, epsilon → ε-MSE, v → v-MSE."""
        return self.model.parametrisation


# --- presets ------------------------------------------------------------------------------------------------
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # 8×8 grey digits, MiniLM tokens through cross-attention
    "digits": dict(
        data="digits", data_kwargs={"split": "train"}, steps=3000, batch_size=128, lr=2e-3, warmup_steps=200,
        ema_halflife_images=50_000,
        sample_every=1000, checkpoint_every=500, out_dir="runs/digits",
        model=dict(net="unet2d", net_preset="tiny", shape=(1, 8, 8), text_encoder="minilm", dataset="digits",
                   guidance=3.0),
    ),
    # 32×32 RGB shapes with colour / shape captions: 4×4 patches -> 8×8 -> 4×4, 48 channels (no narrower than
    # the 48 values of a patch); about 4× the images per second of "small" on a CPU. The EMA half-life is
    # capped by ema_rampup at 5% of the images seen.
    "shapes": dict(
        data="shapes", steps=20_000, batch_size=128, lr=2e-3, warmup_steps=200, ema_halflife_images=50_000,
        sample_every=1000, checkpoint_every=250, out_dir="runs/shapes",
        model=dict(
            net="unet2d", net_preset="small", shape=(3, 32, 32), text_encoder="minilm", dataset="shapes",
            net_overrides={"patch_size": 4, "channels": 48, "channel_mult": (1, 2), "num_res_blocks": 1,
                           "attn_resolutions": (), "cross_attn_resolutions": (8, 4)},
            guidance=3.0,
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


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    unknown = sorted(set(d) - set(_field_names(ModelConfig)))
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown}; allowed: {_field_names(ModelConfig)}")
    return ModelConfig(**d)


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(d) - set(_field_names(TrainConfig)))
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; allowed: {_field_names(TrainConfig)}")
    d = dict(d)
    if isinstance(d.get("model"), dict):
        d["model"] = model_config_from_dict(d["model"])
    return TrainConfig(**d)


def _parse_value(text: str) -> Any:
    """'3' -> 3, '1e-3' -> 0.001, 'none' -> None, '[1,2]' -> [1, 2], 'true' -> True, else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(d: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted overrides ("model.net_preset": "small", "model.net_overrides.channels": 64) to a dict.

    String values are parsed ("3" -> 3, "none" -> None, JSON lists/dicts) so CLI `--set k=v` pairs work as is.
    """
    out = json.loads(json.dumps(d))  # deep copy through JSON (configs are JSON-able)
    for key, value in overrides.items():
        value = _parse_value(value) if isinstance(value, str) else value
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            if not isinstance(node.get(p, {}), dict):
                raise ValueError(f"override {key!r}: {p!r} is not a group of settings")
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset (see TRAIN_PRESETS) with dotted overrides applied, validated."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose one of {sorted(TRAIN_PRESETS)}")
    return train_config_from_dict(apply_overrides(TRAIN_PRESETS[name], overrides))


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    return obj


def config_to_dict(cfg: TrainConfig | ModelConfig) -> dict[str, Any]:
    return _jsonable(cfg)


def config_to_json(cfg: TrainConfig | ModelConfig, indent: int | None = 2) -> str:
    """The resolved config as JSON text (what `--dry-run` prints)."""
    return json.dumps(config_to_dict(cfg), indent=indent, sort_keys=False)


# --- command line -------------------------------------------------------------------------------------------
NET_SIZES = ("tiny", "small", "base")
_FLAGS = {  # flag -> (config key, type, help)
    "--data": ("data", str, "dataset spec: digits, shapes, signals, points:NAME, folder:PATH"),
    "--net-preset": ("model.net_preset", str, "backbone size: tiny, small, base"),
    "--steps": ("steps", int, "optimizer steps (with --minutes: whichever comes first)"),
    "--minutes": ("minutes", float, "wall-clock budget in minutes"),
    "--batch-size": ("batch_size", int, "global batch size"),
    "--lr": ("lr", float, "peak learning rate (AdamW)"),
    "--lr-schedule": ("lr_schedule", str, "after warm-up: constant, cosine (to 0 at --steps) or cooldown"),
    "--cooldown-steps": ("cooldown_steps", int, "lr-schedule cooldown: linear to 0 over the last N steps"),
    "--out": ("out_dir", str, "output folder (checkpoints/, samples/, log.csv, model.safetensors)"),
    "--seed": ("seed", int, "seed of the weights, data order and noise"),
    "--objective": ("model.parametrisation", str, "edm (default), epsilon or v"),
    "--text-encoder": (
        "model.text_encoder",
        str,
        "minilm, digits (class labels), class:a,b,…, hf:PATH, none",
    ),
    "--mixed-precision": ("mixed_precision", str, "no, bf16 or fp16"),
    "--caption-dropout": ("caption_dropout", float, "probability of training on the empty caption"),
    "--min-snr-gamma": ("min_snr_gamma", float, "min-SNR-γ for epsilon / v objectives"),
    "--ema-halflife": ("ema_halflife_images", float, "EMA half-life in images"),
    "--sample-every": ("sample_every", int, "preview grid every N steps (0 = never)"),
    "--checkpoint-every": ("checkpoint_every", int, "checkpoint every N steps"),
    "--keep-last": ("keep_last", int, "checkpoints to keep"),
    "--log-every": ("log_every", int, "log.csv row every N steps"),
    "--threads": ("num_threads", int, "torch CPU threads"),
}


def train_parser():
    """The argparse parser of `python -m rill.train` / `rill train`."""
    import argparse

    p = argparse.ArgumentParser(
        prog="rill train",
        description="Train a rill diffusion model (HF accelerate; torchrun for several "
        "processes). Example: rill train --preset digits --minutes 10 --out runs/digits",
    )
    p.add_argument(
        "--preset",
        help=f"training preset {sorted(TRAIN_PRESETS)} (default: chosen from --data, "
        f"else digits), or a backbone size {list(NET_SIZES)}",
    )
    for flag, (_, typ, text) in _FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=text)
    p.add_argument("--config", help="a JSON file with a full TrainConfig (e.g. from --dry-run)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config field, dotted (repeatable): --set model.net_overrides.channels=64",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _preset_for_data(data: str | None) -> str:
    kind = (data or "digits").split(":", 1)[0]
    return {"digits": "digits", "shapes": "shapes", "signals": "signals", "points": "points"}.get(
        kind, "shapes"
    )


def config_from_args(args) -> TrainConfig:
    """TrainConfig from parsed `train_parser()` arguments: base (--config, the checkpoint's config when
    resuming without a preset, or a preset), then the flags, then --set pairs."""
    from pathlib import Path

    overrides: dict[str, Any] = {}
    preset = args.preset
    if preset in NET_SIZES:
        overrides["model.net_preset"], preset = preset, None
    if args.config:
        base = json.loads(Path(args.config).read_text(encoding="utf-8"))
    elif args.resume and preset is None and args.data is None:
        from .checkpoint import latest_checkpoint

        out = args.out or TRAIN_PRESETS["digits"]["out_dir"]
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no valid checkpoint under {Path(out) / 'checkpoints'}")
        base = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))["config"]
    else:
        name = preset or _preset_for_data(args.data)
        if name not in TRAIN_PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; choose a training preset {sorted(TRAIN_PRESETS)} "
                f"or a backbone size {list(NET_SIZES)}"
            )
        base = TRAIN_PRESETS[name]
    for flag, (key, _, _) in _FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            overrides[key] = None if key == "model.text_encoder" and value == "none" else value
    if args.data is not None and args.data.split(":", 1)[0] in ("points", "signals", "digits", "shapes"):
        overrides.setdefault("model.dataset", args.data)
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = value
    return train_config_from_dict(apply_overrides(base, overrides))
