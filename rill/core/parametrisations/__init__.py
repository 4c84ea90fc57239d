"""Parametrisations: a backbone + a prediction type -> the σ contract D(x; σ, cond), with the loss that trains
it. The registry PARAMETRISATIONS maps each name ("edm", "epsilon", "v", "x0", "flow") to its class
(base.py)."""

from . import edm, flow, vp  # noqa: F401  (each registers its classes)
from .base import PARAMETRISATIONS, ParamSettings, get_parametrisation, mean_per_sample, register
from .edm import EDMPrecond, edm_loss, edm_weight
from .flow import FlowPrecond, flow_loss
from .vp import PREDICTIONS, VPAdapter, VPPrecond, min_snr_weight, vp_loss

__all__ = ["PARAMETRISATIONS", "ParamSettings", "get_parametrisation", "register", "mean_per_sample",
           "EDMPrecond", "edm_loss", "edm_weight", "FlowPrecond", "flow_loss", "PREDICTIONS", "VPAdapter",
           "VPPrecond", "min_snr_weight", "vp_loss"]  # fmt: skip
