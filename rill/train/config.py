"""The training-run config (a TrainConfig holds a ModelConfig plus everything about the run), from / to
JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..core.checks import check_choice, check_int, check_range
from ..model.config import ModelConfig, field_names, model_config_from_dict

__all__ = ["TrainConfig", "train_config_from_dict", "LR_SCHEDULES", "MIXED_PRECISION"]

MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine", "cooldown", "wsd")


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
    lr_schedule: str = "constant"  # after warm-up: constant | cosine (to 0 at `steps`) | cooldown | wsd
    cooldown_steps: int = 0  # "cooldown": constant, then linear to 0 over the last cooldown_steps
    # "wsd": constant, then linear to 0 over the last cooldown_fraction of the budget, laid out over the time
    # as well as the steps: progress = max(step / steps, elapsed / (60 · minutes)), whichever budget is set
    cooldown_fraction: float = 0.2
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max global grad norm; None = off
    ema_decay: float | None = None  # fixed per-step decay, or ...
    ema_halflife_images: float | None = 20_000.0  # ... half-life in images (Karras et al. 2022, App. F)
    ema_rampup: float | None = 0.05  # half-life ≤ rampup · images seen (EDM's ema_rampup_ratio)
    caption_dropout: float = 0.1  # captions replaced by "" (the unconditional embedding)
    # non-leaky shift augmentation (rill/train/augment.py): each image moved by up to augment_shift px with
    # probability augment_p, the shift told to the net (its augment_dim is set to match); 0 = off
    augment_p: float = 0.0
    augment_shift: int = 1
    min_snr_gamma: float | None = 5.0  # epsilon / v only (Hang et al. 2023); None = unweighted
    p_mean: float = -1.2  # EDM training σ: ln σ ~ N(p_mean, p_std²) (Karras et al. 2022, Table 1)
    p_std: float = 1.2
    mixed_precision: str = "no"  # no | bf16 | fp16 (autocast where the device supports it)
    seed: int = 0
    # a warm start: the backbone begins from this rill model file's weights (a new run with its own optimiser,
    # schedule and EMA; the file's config must build the same backbone). Continue a stopped run with resume.
    init_from: str | None = None
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
        if self.steps is not None:
            check_int("steps (or None)", self.steps, 1)
        if self.minutes is not None:
            check_range("minutes", self.minutes, 0.0, math.inf, lo_open=True)
        for name in ("batch_size", "log_every"):
            check_int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "cooldown_steps", "sample_every", "checkpoint_every", "keep_last"):
            check_int(name, getattr(self, name), 0)
        if self.keep_last < 1:
            raise ValueError(
                f"keep_last must be >= 1 (the last good checkpoint is always kept), got {self.keep_last}"
            )
        check_range("lr", self.lr, 0.0, math.inf, lo_open=True)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.lr_schedule == "cooldown":
            if self.steps is None or not 0 < self.cooldown_steps <= self.steps - self.warmup_steps:
                raise ValueError(
                    "lr_schedule 'cooldown' decays to 0 at `steps`: it needs --steps and "
                    f"0 < cooldown_steps <= steps - warmup_steps (got steps={self.steps}, "
                    f"cooldown_steps={self.cooldown_steps}, warmup_steps={self.warmup_steps})"
                )
        if self.lr_schedule == "wsd":
            check_range("cooldown_fraction", self.cooldown_fraction, 0.0, 1.0, lo_open=True)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        check_range("weight_decay", self.weight_decay, 0.0, math.inf)
        check_range("caption_dropout", self.caption_dropout, 0.0, 1.0)
        check_range("augment_p", self.augment_p, 0.0, 1.0)
        check_int("augment_shift", self.augment_shift, 1)
        if self.grad_clip is not None:
            check_range("grad_clip", self.grad_clip, 0.0, math.inf, lo_open=True)
        if self.ema_decay is not None:
            check_range("ema_decay", self.ema_decay, 0.0, 1.0)
        if self.ema_halflife_images is not None:
            check_range("ema_halflife_images", self.ema_halflife_images, 0.0, math.inf, lo_open=True)
        if self.min_snr_gamma is not None:
            check_range("min_snr_gamma", self.min_snr_gamma, 0.0, math.inf, lo_open=True)
        check_range("p_std", self.p_std, 0.0, math.inf, lo_open=True)

    @property
    def objective(self) -> str:
        """The training objective follows the parametrisation: edm → EDM loss, epsilon → ε-MSE, v → v-MSE."""
        return self.model.parametrisation


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(d) - set(field_names(TrainConfig)))
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; allowed: {field_names(TrainConfig)}")
    d = dict(d)
    if isinstance(d.get("model"), dict):
        d["model"] = model_config_from_dict(d["model"])
    return TrainConfig(**d)
