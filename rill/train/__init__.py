"""rill.train: the training loop and everything it owns.

loop.py         train(): HF accelerate for devices and DDP, EMA, exact resume, previews
config.py       TrainConfig (a dataclass)            presets.py   named presets (digits, shapes, …)
batches.py      deterministic sharded batches, the caption bank
ema.py          EMA with a half-life in images       precision.py autocast / GradScaler
checkpoint.py   atomic, verified safetensors + JSON checkpoints
cli.py          `rill train` / `python -m rill.train`: flags -> TrainConfig
warm_start.py   --init-from: copy a model file's backbone in (a zero-initialised refine head may be added)
"""

from .config import TrainConfig, train_config_from_dict
from .loop import NonFiniteLossError, TrainingInterrupted, lr_factor, train
from .presets import TRAIN_PRESETS, train_preset

__all__ = ["TrainConfig", "train_config_from_dict", "train", "lr_factor", "NonFiniteLossError",
           "TrainingInterrupted", "TRAIN_PRESETS", "train_preset"]  # fmt: skip
