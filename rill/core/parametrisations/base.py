"""The parametrisation registry: a parametrisation turns a backbone into the σ contract and carries its loss.

    cls = PARAMETRISATIONS["edm"]                       # or get_parametrisation("edm")
    denoiser = cls.build(net, ParamSettings(sigma_data=0.5))
    x0_hat = denoiser(x, sigma, cond)                   # the one contract
    loss = denoiser.loss(x0, cond, generator=g)         # (B,) per-sample loss of this objective

Adding one (e.g. flow matching) is one file with a class decorated by @register("name") and one import in
this package's __init__.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["ParamSettings", "PARAMETRISATIONS", "register", "get_parametrisation", "mean_per_sample"]


@dataclass(frozen=True)
class ParamSettings:
    """What a parametrisation may need besides the backbone (fields of rill.model.ModelConfig)."""

    sigma_data: float = 0.5  # std of the data (EDM preconditioning)
    vp_schedule: str = "cosine"  # β schedule of the discrete VP parametrisations (rill.core.schedules.BETAS)
    vp_timesteps: int = 1000  # T of the discrete VP schedule
    flow_shift: float = 1.0  # flow matching's resolution shift σ' = s·σ (SD3, Sec. 5.3.2); 1 = none


PARAMETRISATIONS: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator; the class defines build(net, settings), sigma_range(settings), forward and loss."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in PARAMETRISATIONS:
            raise ValueError(f"parametrisation {name!r} is registered twice")
        for attr in ("build", "sigma_range", "forward", "loss"):
            if not callable(getattr(cls, attr, None)):
                raise TypeError(f"parametrisation {name!r} ({cls.__name__}) lacks {attr}()")
        cls.name = name
        PARAMETRISATIONS[name] = cls
        return cls

    return add


def get_parametrisation(name: str) -> type[nn.Module]:
    """The registered class for `name`, or a ValueError that lists the names (and the closest one)."""
    if name in PARAMETRISATIONS:
        return PARAMETRISATIONS[name]
    close = difflib.get_close_matches(str(name), PARAMETRISATIONS, n=1, cutoff=0.3)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown parametrisation {name!r}{hint}; choose one of {list(PARAMETRISATIONS)}")


def mean_per_sample(x: Tensor) -> Tensor:
    """Mean over every non-batch dimension: (B, ...) -> (B,), so a loss does not scale with the image size."""
    return x.reshape(x.shape[0], -1).mean(dim=1)
