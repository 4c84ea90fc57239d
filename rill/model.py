"""A trained model = backbone + parametrisation + text encoder, stored as ONE self-describing .safetensors.

    model = DiffusionModel(ModelConfig(net="unet2d", net_preset="tiny", shape=(1, 8, 8)))
    x0_hat = model.denoiser(x, sigma, model.encode(["a handwritten 3"]))   # the one contract
    save_model(model, "digits.safetensors"); same = load_model("digits.safetensors")
    model = bundled_model("digits")

File format: tensors "net.<name>" (the backbone's state_dict, usually the EMA weights) and, in the safetensors
metadata, "rill.format" = "rill-model/1" and "rill.model_config" = the ModelConfig as JSON (with the
backbone's fully resolved fields in `net_overrides`, so the file rebuilds without presets). The text encoder
is frozen and pretrained: it is named in the config (`text_encoder`) and loaded lazily, never stored in the
weights.
Only safetensors are read: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import ModelConfig, config_to_dict, model_config_from_dict
from .denoisers import EDMPrecond, VPAdapter

__all__ = [
    "DiffusionModel",
    "save_model",
    "load_model",
    "bundled_model",
    "read_safetensors",
    "save_preview",
    "FORMAT",
]

FORMAT = "rill-model/1"
_KNOWN_TEXT_DIMS = {"minilm": 384}  # token width of encoders we can size a net for without loading them
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


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
    """Backbone + preconditioning/adapter + (lazily loaded, frozen) text encoder. See the module docstring.

    parametrisation "edm": D = EDMPrecond(net, σ_data) (Karras et al. 2022, Eq. 7).
    "epsilon" / "v": the net predicts ε or v on a discrete VP schedule and sees c_noise = t / T (the
    backbones' Fourier features are tuned for inputs of order one); D = VPAdapter(...) gives the σ contract.
    """

    def __init__(self, config: ModelConfig, text_encoder: Any | None = None) -> None:
        super().__init__()
        from .nets import build_net, net_config

        self._encoder = text_encoder  # plain attribute: never part of the state_dict
        auto = self._auto_net_fields(config, text_encoder)
        self.net = build_net(config.net, config.net_preset, **{**auto, **config.net_overrides})
        resolved = {k: v for k, v in net_config(self.net).items() if k != "kind"}
        self.config = model_config_from_dict({**config_to_dict(config), "net_overrides": resolved})
        if text_encoder is not None and not isinstance(self.config.text_encoder, dict):
            self.config.text_encoder = dict(text_encoder.spec)
        # kept out of the module tree (object.__setattr__) so the weights appear once, as "net.*"
        if self.config.parametrisation == "edm":
            object.__setattr__(self, "_denoiser", EDMPrecond(self.net, self.config.sigma_data))
        else:
            self.schedule = self.config.vp_schedule_obj()
            prediction = "epsilon" if self.config.parametrisation == "epsilon" else "v_prediction"
            object.__setattr__(self, "_denoiser", VPAdapter(self.vp_net, self.schedule, prediction))

    # --- construction helpers -------------------------------------------------------------------------------
    def _auto_net_fields(self, config: ModelConfig, encoder: Any | None) -> dict[str, Any]:
        """Backbone fields implied by the data shape and the conditioning (explicit overrides win)."""
        shape = config.shape
        if config.net == "unet2d":
            if len(shape) != 3 or shape[1] != shape[2]:
                raise ValueError(f"unet2d needs a square (C, H, W) shape, got model.shape={shape}")
            auto: dict[str, Any] = {"in_channels": shape[0], "image_size": shape[1]}
        elif config.net == "unet1d":
            if len(shape) != 2:
                raise ValueError(f"unet1d needs a (C, L) shape, got model.shape={shape}")
            auto = {"in_channels": shape[0], "length": shape[1]}
        else:
            auto = {"dim": int(torch.Size(shape).numel())}
        spec, text = config.text_encoder, config.net != "mlp"
        classes = _class_count(spec)
        if spec is None or classes is not None:
            auto.update(pooled_dim=0, num_classes=classes or 0)
            if text:
                auto.update(context_dim=0, cross_attn_resolutions=())
        elif not {"context_dim", "pooled_dim"} <= set(config.net_overrides):
            dim = encoder.dim if encoder is not None else _KNOWN_TEXT_DIMS.get(_encoder_name(spec))
            if dim is None:  # an encoder we cannot size without loading it
                self._encoder = encoder = self._load_encoder(spec)
                dim = encoder.dim
            auto.update(pooled_dim=dim, num_classes=0, **({"context_dim": dim} if text else {}))
        return auto

    @staticmethod
    def _load_encoder(spec: str | dict | None) -> Any:
        from .text import CachedEncoder, load_text_encoder

        enc = load_text_encoder(spec)
        return None if enc is None else CachedEncoder(enc)

    # --- the contract ---------------------------------------------------------------------------------------
    def vp_net(self, x_vp: Tensor, t: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        """The raw ε / v network on the VP schedule: c_noise = t / T."""
        return self.net(x_vp, t / self.config.vp_timesteps, cond)

    def denoiser(self, x: Tensor, sigma: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        """x0_hat = E[x0 | x] at noise level σ (rill.denoisers contract)."""
        return self._denoiser(x, sigma, cond)

    forward = denoiser

    def loss(
        self,
        x0: Tensor,
        cond: dict[str, Tensor] | None = None,
        *,
        generator: torch.Generator | None = None,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        min_snr_gamma: float | None = None,
    ) -> Tensor:
        """Per-sample training loss (B,) of this model's parametrisation (rill.losses)."""
        from .losses import edm_loss, vp_loss
        from .schedules import LogNormalSigmas

        if self.config.parametrisation == "edm":
            return edm_loss(
                self.denoiser,
                x0,
                cond,
                sigma_data=self.config.sigma_data,
                distribution=LogNormalSigmas(p_mean, p_std),
                generator=generator,
            )
        return vp_loss(
            self.vp_net,
            self.schedule,
            x0,
            cond,
            prediction=self.config.parametrisation,
            min_snr_gamma=min_snr_gamma,
            generator=generator,
        )

    # --- conditioning ---------------------------------------------------------------------------------------
    @property
    def text_encoder(self) -> Any | None:
        """The frozen text encoder (loaded on first use, cached per prompt); None for unconditional models."""
        if self._encoder is None and self.config.text_encoder is not None:
            self._encoder = self._load_encoder(self.config.text_encoder)
        return self._encoder

    @property
    def conditional(self) -> bool:
        return self.config.text_encoder is not None

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def encode(self, prompts: list[str]) -> dict[str, Tensor] | None:
        """Cond dict for `prompts` on the model's device; "" is the unconditional embedding. None if
        the model is unconditional."""
        if isinstance(prompts, str):
            raise TypeError(
                f"encode() takes a list of prompts, got the string {prompts!r}; wrap it: [prompt]"
            )
        enc = self.text_encoder
        if enc is None:
            return None
        return {k: v.to(self.device) for k, v in enc.encode(list(prompts)).items()}

    def uncond(self, batch: int = 1) -> dict[str, Tensor] | None:
        """The unconditional embedding (of ""), repeated `batch` times."""
        return self.encode([""] * batch)


# --- files --------------------------------------------------------------------------------------------------
def _check_safetensors_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise ValueError(
            f"{p}: {p.suffix} files are pickles and are never loaded (they can run code); "
            "rill reads only .safetensors (+ JSON)"
        )
    if p.suffix.lower() != ".safetensors":
        raise ValueError(f"{p}: expected a .safetensors file, got suffix {p.suffix!r}")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such model file")
    return p


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file; anything else (e.g. a pickle named .safetensors) raises a
    ValueError before a single byte is interpreted as code."""
    from safetensors import safe_open

    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(9)
    # safetensors layout: 8-byte little-endian header length, then a JSON header starting with "{"
    if len(head) < 9 or head[8:9] != b"{":
        kind = "a pickle" if head[:1] == b"\x80" or head[:2] == b"PK" else "not safetensors"
        raise ValueError(
            f"{p} is not a safetensors file (it looks like {kind}); refusing to load it. "
            "rill never unpickles files"
        )
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type for corrupt headers
        raise ValueError(f"{p} is not a valid safetensors file: {e}") from e
    return tensors, meta


def save_model(
    model: DiffusionModel,
    path: str | os.PathLike,
    weights: dict[str, Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `model` as one .safetensors file (see the module docstring), atomically.

    weights: the backbone state_dict to store instead of model.net's (e.g. the EMA weights).
    metadata: extra JSON-able facts stored under "rill.info" (training step, wall time, ...).
    """
    from .checkpoint import atomic_save_safetensors

    state = weights if weights is not None else model.net.state_dict()
    ref = model.net.state_dict()
    if set(state) != set(ref):
        raise ValueError(
            f"weights do not match the backbone: missing {sorted(set(ref) - set(state))}, "
            f"unexpected {sorted(set(state) - set(ref))}"
        )
    tensors = {f"net.{k}": v.detach().to("cpu", ref[k].dtype).contiguous() for k, v in state.items()}
    meta = {"rill.format": FORMAT, "rill.model_config": json.dumps(config_to_dict(model.config))}
    if metadata:
        meta["rill.info"] = json.dumps(metadata)
    return atomic_save_safetensors(tensors, path, meta)


def _check_weights(model: DiffusionModel, tensors: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    ref = model.net.state_dict()
    state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
    problems = []
    missing, extra = sorted(set(ref) - set(state)), sorted(set(tensors) - {f"net.{k}" for k in ref})
    if missing:
        problems.append(f"missing tensors {['net.' + k for k in missing][:10]}")
    if extra:
        problems.append(f"unexpected tensors {extra[:10]}")
    bad = [
        f"net.{k}: file {tuple(v.shape)} vs config {tuple(ref[k].shape)}"
        for k, v in state.items()
        if k in ref and v.shape != ref[k].shape
    ]
    if bad:
        problems.append(f"shape mismatches {bad[:10]}")
    if problems:
        raise ValueError(
            f"{path}: the tensors do not match the model config stored in the file: " + "; ".join(problems)
        )
    return state


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", text_encoder: Any | None = None
) -> DiffusionModel:
    """Rebuild a DiffusionModel from a .safetensors file written by save_model (eval mode)."""
    p = _check_safetensors_path(path)
    tensors, meta = read_safetensors(p)
    if "rill.model_config" not in meta:
        raise ValueError(
            f"{p} has no 'rill.model_config' metadata: not a rill model file (metadata keys: {sorted(meta)})"
        )
    try:
        config = model_config_from_dict(json.loads(meta["rill.model_config"]))
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{p}: unreadable model config in the metadata: {e}") from e
    model = DiffusionModel(config, text_encoder=text_encoder)
    model.net.load_state_dict(_check_weights(model, tensors, p))
    model.info = json.loads(meta.get("rill.info", "{}"))
    return model.to(device).eval().requires_grad_(False)


def bundled_model(name: str, device: str | torch.device = "cpu") -> DiffusionModel:
    """A model shipped with rill (rill/assets/{name}.safetensors), e.g. "digits", "shapes"."""
    from importlib import resources

    assets = resources.files("rill") / "assets"
    available = (
        sorted(p.name[: -len(".safetensors")] for p in assets.iterdir() if p.name.endswith(".safetensors"))
        if assets.is_dir()
        else []
    )
    if name not in available:
        raise ValueError(f"no bundled model {name!r}; available: {available}")
    with resources.as_file(assets / f"{name}.safetensors") as p:
        return load_model(p, device=device)


def save_preview(model: DiffusionModel, prompts: list[str], path: str | os.PathLike, nfe: int = 16) -> Path:
    """A PNG of samples from `model` via rill.generate: an image grid (one row per prompt), a scatter for 2D
    points in [-3, 3]², or curves for 1D signals."""
    from .explain import save_grid
    from .generate import generate

    path = Path(path)
    n = max(1, 64 // len(prompts))
    x = generate(model, prompts, n=n, nfe=nfe, seed=0, device=model.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 4:
        return save_grid(x, path, nrow=n, scale=max(1, 128 // x.shape[-1]))
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(img)
    flat = x.reshape(len(x), -1).float()
    if flat.shape[1] == 2:  # points
        for px, py in ((flat + 3) / 6 * 255).tolist():
            draw.point((px, 255 - py), fill="black")
    else:  # signals: the first 8 as curves
        for row in flat[:8]:
            ys = ((1 - row.clamp(-1, 1)) / 2 * 255).tolist()
            draw.line([(i * 255 / max(1, len(ys) - 1), y) for i, y in enumerate(ys)], fill="black")
    img.save(path)
    return path
