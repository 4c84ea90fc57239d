"""The model config: everything needed to rebuild a trained model from its weights (it travels inside the
.safetensors metadata), and JSON in / out for configs.

    cfg = ModelConfig(net="unet2d", net_preset="tiny", shape=(1, 8, 8))
    same = model_config_from_dict(json.loads(config_to_json(cfg)))
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..core.checks import check_choice, check_range
from ..core.parametrisations import ParamSettings, get_parametrisation
from ..nets import NETS

__all__ = ["ModelConfig", "model_config_from_dict", "config_to_dict", "config_to_json", "apply_overrides",
           "field_names", "check_guidance_interval"]  # fmt: skip


@dataclass
class ModelConfig:
    """A diffusion model = backbone + parametrisation + conditioning. JSON-able; stored with the weights."""

    net: str = "unet2d"  # backbone kind, a name in rill.nets.NETS: unet2d | unet1d | mlp
    net_preset: str | None = "tiny"  # rill.nets preset (None = the kind's defaults)
    net_overrides: dict[str, Any] = field(default_factory=dict)  # fields on top of the preset
    shape: tuple[int, ...] = (1, 8, 8)  # one sample, e.g. (C, H, W)
    sigma_data: float = 0.5  # std of the data (EDM preconditioning)
    parametrisation: str = (
        "edm"  # a name in rill.core.parametrisations.PARAMETRISATIONS: edm | epsilon | v | x0 | flow
    )
    vp_schedule: str = "cosine"  # β schedule of epsilon / v / x0 (rill.core.schedules.BETAS)
    vp_timesteps: int = 1000
    flow_shift: float = 1.0  # flow: resolution shift σ' = s·σ of training σ and sampling range (1 = none)
    text_encoder: str | dict[str, Any] | None = (
        "minilm"  # name or encoder.spec; "digits"/"class:a,b" = labels
    )
    cfg_dropout: float = 0.1  # caption dropout used in training (for the record; recorded by train())
    dataset: str = ""  # data spec it was trained on (for the record)
    sigma_min: float | None = None  # recommended sampling range; None = 0.002 / 80 (edm) or the VP schedule's
    sigma_max: float | None = None
    guidance: float = 2.0  # recommended classifier-free guidance scale
    # the σ range [lo, hi] where that guidance acts (Kynkäänniemi et al. 2024); None = every σ
    guidance_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        check_choice("model.net", self.net, NETS)
        get_parametrisation(self.parametrisation)  # unknown name -> ValueError listing the registered ones
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"model.shape must be a non-empty tuple of positive ints, got {self.shape}")
        check_range("model.sigma_data", self.sigma_data, 0.0, math.inf, lo_open=True)
        check_range("model.cfg_dropout", self.cfg_dropout, 0.0, 1.0)
        check_range("model.flow_shift", self.flow_shift, 0.0, math.inf, lo_open=True)
        if int(self.vp_timesteps) != self.vp_timesteps or self.vp_timesteps < 2:
            raise ValueError(f"model.vp_timesteps must be an integer >= 2, got {self.vp_timesteps!r}")
        if not isinstance(self.net_overrides, dict):
            raise ValueError(f"model.net_overrides must be a dict, got {type(self.net_overrides).__name__}")
        if self.guidance_interval is not None:
            name = "model.guidance_interval"
            self.guidance_interval = check_guidance_interval(self.guidance_interval, name)
        if self.sigma_min is None or self.sigma_max is None:
            lo, hi = self._default_sigma_range()
            self.sigma_min = lo if self.sigma_min is None else self.sigma_min
            self.sigma_max = hi if self.sigma_max is None else self.sigma_max
        if not 0 < self.sigma_min < self.sigma_max < math.inf:
            raise ValueError(
                f"need 0 < model.sigma_min < model.sigma_max < inf, got {self.sigma_min}, {self.sigma_max}"
            )

    def param_settings(self) -> ParamSettings:
        """The fields the parametrisation reads (rill.core.parametrisations.ParamSettings)."""
        return ParamSettings(
            self.sigma_data, self.vp_schedule, int(self.vp_timesteps), float(self.flow_shift)
        )

    def _default_sigma_range(self) -> tuple[float, float]:
        return get_parametrisation(self.parametrisation).sigma_range(self.param_settings())


def check_guidance_interval(interval: Any, name: str = "guidance interval") -> tuple[float, float]:
    """(lo, hi) as floats, 0 <= lo < hi (hi may be inf), else a ValueError naming `name`."""
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [lo, hi] (σ values), got {interval!r}") from None
    if not 0.0 <= lo < hi:
        raise ValueError(f"{name} must satisfy 0 <= lo < hi (σ values), got [{lo:g}, {hi:g}]")
    return lo, hi


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    unknown = sorted(set(d) - set(field_names(ModelConfig)))
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown}; allowed: {field_names(ModelConfig)}")
    return ModelConfig(**d)


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


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return _jsonable(cfg)


def config_to_json(cfg: Any, indent: int | None = 2) -> str:
    """The resolved config as JSON text (what `--dry-run` prints)."""
    return json.dumps(config_to_dict(cfg), indent=indent, sort_keys=False)
