"""rill.model: a trained model = backbone + parametrisation + text encoder (+ extra tensor groups).

config.py   ModelConfig (a dataclass) and JSON in / out
bundle.py   DiffusionModel: the object that holds the parts and exposes the denoiser contract
files.py    the file format: safetensors read (no pickles) / atomic write, groups, bundled models
"""

from .bundle import DiffusionModel
from .config import ModelConfig, config_to_dict, config_to_json, model_config_from_dict
from .files import (
    FORMAT,
    TensorGroup,
    bundled_model,
    bundled_names,
    load_group,
    load_model,
    net_fingerprint,
    read_safetensors,
    save_group,
    save_model,
)

__all__ = ["DiffusionModel", "ModelConfig", "config_to_dict", "config_to_json", "model_config_from_dict",
           "FORMAT", "TensorGroup", "bundled_model", "bundled_names", "load_group", "load_model",
           "net_fingerprint", "read_safetensors", "save_group", "save_model"]  # fmt: skip
