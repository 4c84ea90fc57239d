"""A trained model = backbone + parametrisation + text encoder (+ named extra tensor groups), in one object.

    model = DiffusionModel(ModelConfig(net="unet2d", net_preset="tiny", shape=(1, 8, 8)))
    x0_hat = model.denoiser(x, sigma, model.encode(["a handwritten 3"]))   # the one contract
    loss = model.loss(x0, cond, generator=g)                               # its parametrisation's loss

The backbone comes from rill.nets (NETS[config.net]; the fields the sample shape and the conditioning imply
are filled in by the backbone's own fields_for), the σ contract and the loss from the parametrisation
registry (rill.core.parametrisations). The text encoder is frozen and pretrained: named in the config and
loaded on the first encode() (or load_text_encoder()), never stored in the weights. Files: rill.model.files.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..conditioning.text import CachedEncoder, load_text_encoder
from ..core.parametrisations import get_parametrisation
from ..nets import NETS, CondSpec, build_net, net_config
from .config import ModelConfig, config_to_dict, model_config_from_dict

__all__ = ["DiffusionModel"]

_KNOWN_TEXT_DIMS = {"minilm": 384}  # token width of encoders we can size a net for without loading them


def _encoder_name(spec: str | dict | None) -> str | None:
    if isinstance(spec, dict):
        return spec.get("name_or_path") if spec.get("kind") == "hf" else None
    return spec


def _class_count(spec: str | dict | None) -> int | None:
    """Number of classes of a label encoder spec ("digits", "class:a,b", {"kind": "class"}), else None."""
    if isinstance(spec, dict):
        return len(spec["labels"]) if spec.get("kind") == "class" else None
    if spec == "digits":
        return 10
    if isinstance(spec, str) and spec.startswith("class:"):
        return len(spec[len("class:") :].split(","))
    return None


class DiffusionModel(nn.Module):
    """Backbone + parametrisation + (lazily loaded, frozen) text encoder. See the module docstring.

    `text_encoder` is the loaded encoder or None (reading it never loads anything); `load_text_encoder()`
    loads the configured one on first call. `groups` holds the file's extra tensor groups (adapters, control
    branches) by name, as rill.model.files.TensorGroup.
    """

    def __init__(self, config: ModelConfig, text_encoder: Any | None = None) -> None:
        super().__init__()
        self.text_encoder = text_encoder  # plain attribute: never part of the state_dict
        self.groups: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        # tuned few-step plans by budget: {"<nfe>": {"sampler", "options", "sigmas", "guidance", ...}}
        # (rill.inference.tune writes them; generate(sampler="auto") uses a matching one)
        self.sampling: dict[str, Any] = {}
        auto = NETS[config.net].fields_for(config.shape, self._cond_spec(config))
        self.net = build_net(config.net, config.net_preset, **{**auto, **config.net_overrides})
        resolved = {k: v for k, v in net_config(self.net).items() if k != "kind"}
        self.config = model_config_from_dict({**config_to_dict(config), "net_overrides": resolved})
        if self.text_encoder is not None and not isinstance(self.config.text_encoder, dict):
            self.config.text_encoder = dict(self.text_encoder.spec)
        # kept out of the module tree (object.__setattr__) so the weights appear once, as "net.*"
        precond = get_parametrisation(self.config.parametrisation).build(
            self.net, self.config.param_settings()
        )
        object.__setattr__(self, "_denoiser", precond)

    def _cond_spec(self, config: ModelConfig) -> CondSpec:
        """The widths the conditioning gives the backbone (loads an unknown text encoder to learn its width,
        unless the overrides fix both widths)."""
        spec = config.text_encoder
        classes = _class_count(spec)
        if spec is None or classes is not None:
            return CondSpec(num_classes=classes or 0)
        over = config.net_overrides
        if {"context_dim", "pooled_dim"} <= set(over):
            return CondSpec(token_dim=int(over["context_dim"]), pooled_dim=int(over["pooled_dim"]))
        enc = self.text_encoder
        dim = enc.dim if enc is not None else _KNOWN_TEXT_DIMS.get(_encoder_name(spec))
        if dim is None:  # an encoder we cannot size without loading it
            self.text_encoder = self._load_encoder(spec)
            dim = self.text_encoder.dim
        return CondSpec(token_dim=dim, pooled_dim=dim)

    @staticmethod
    def _load_encoder(spec: str | dict | None) -> Any:
        enc = load_text_encoder(spec)
        return None if enc is None else CachedEncoder(enc)

    # --- the contract ---------------------------------------------------------------------------------------
    @property
    def parametrisation(self) -> nn.Module:
        """The parametrisation object (EDMPrecond, EpsilonPrecond, …) that wraps `net`."""
        return self._denoiser

    def denoiser(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        """x0_hat = E[x0 | x] at noise level σ (rill.core.denoiser contract)."""
        return self._denoiser(x, sigma, cond)

    forward = denoiser

    def loss(
        self, x0: Tensor, cond: dict[str, Tensor] | None = None, *, generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor:  # fmt: skip
        """Per-sample training loss (B,) of this model's parametrisation (p_mean / p_std for edm,
        min_snr_gamma for epsilon / v / x0)."""
        return self._denoiser.loss(x0, cond, generator=generator, **options)

    # --- conditioning ---------------------------------------------------------------------------------------
    def load_text_encoder(self) -> Any | None:
        """The frozen text encoder, loaded on the first call (cached per prompt); None if unconditional."""
        if self.text_encoder is None and self.config.text_encoder is not None:
            self.text_encoder = self._load_encoder(self.config.text_encoder)
        return self.text_encoder

    @property
    def conditional(self) -> bool:
        return self.config.text_encoder is not None

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def encode(self, prompts: list[str]) -> dict[str, Tensor] | None:
        """Cond dict for `prompts` on the model's device; "" is the unconditional embedding. None if the
        model is unconditional. Loads the text encoder on first use."""
        if isinstance(prompts, str):
            raise TypeError(
                f"encode() takes a list of prompts, got the string {prompts!r}; wrap it: [prompt]"
            )
        enc = self.load_text_encoder()
        if enc is None:
            return None
        return {k: v.to(self.device) for k, v in enc.encode(list(prompts)).items()}

    def uncond(self, batch: int = 1) -> dict[str, Tensor] | None:
        """The unconditional embedding (of ""), repeated `batch` times."""
        return self.encode([""] * batch)
