"""The model file format's one home: read safetensors (never pickles), write atomically, save / load models
and their named extra tensor groups, find the bundled models.

A model file is ONE self-describing .safetensors:
  tensors   "net.<name>"            the backbone's state_dict (usually the EMA weights)
            "<group>.<name>"        each extra tensor group (an adapter, a control branch, …)
  metadata  "rill.format"           "rill-model/1"
            "rill.model_config"     the ModelConfig as JSON (the backbone's fields fully resolved in
                                    net_overrides, so the file rebuilds without presets)
            "rill.info"             optional JSON facts (training step, wall time, recipe, …)
            "rill.sampling"         optional JSON {"<nfe>": tuned sampler plan} (rill tune-sampler)
            "rill.groups"           optional JSON {group: {"kind", "base", "meta"}}; "base" is the fingerprint
                                    of the backbone the group was made for (net_fingerprint)
A group file (save_group / load_group) holds one group on its own: "rill.format" = "rill-group/1".
Only safetensors are read: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .bundle import DiffusionModel
from .config import config_to_dict, model_config_from_dict

__all__ = ["FORMAT", "GROUP_FORMAT", "TensorGroup", "read_safetensors", "save_model", "load_model",
           "bundled_model", "bundled_names", "bundled_file", "is_model_file", "net_fingerprint", "save_group",
           "load_group", "atomic_save_safetensors", "atomic_write_text", "fsync_file",
           "fsync_dir"]  # fmt: skip

FORMAT = "rill-model/1"
GROUP_FORMAT = "rill-group/1"
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


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
    groups: list[TensorGroup] | None = None,
) -> Path:
    """Write `model` as one .safetensors file (see the module docstring), atomically.

    weights: the backbone state_dict to store instead of model.net's (e.g. the EMA weights).
    metadata: extra JSON-able facts stored under "rill.info" (training step, wall time, ...).
    groups: extra tensor groups to store with it (default: model.groups); each must fit this backbone.
    """
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
    if getattr(model, "sampling", None):
        meta["rill.sampling"] = json.dumps(model.sampling)
    groups = list(model.groups.values()) if groups is None else list(groups)
    if groups:
        base = net_fingerprint(model)
        for g in groups:
            g.check_fits(base, f"save_model({path})")
            tensors.update({f"{g.name}.{k}": v.detach().to("cpu").contiguous() for k, v in g.tensors.items()})
        meta["rill.groups"] = json.dumps({g.name: g.header() for g in groups})
    return atomic_save_safetensors(tensors, path, meta)


def _check_weights(
    model: DiffusionModel, tensors: dict[str, Tensor], path: Path, groups: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    ref = model.net.state_dict()
    state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
    problems = []
    in_group = {k for k in tensors if k.split(".", 1)[0] in groups}
    missing = sorted(set(ref) - set(state))
    extra = sorted(set(tensors) - {f"net.{k}" for k in ref} - in_group)
    if missing:
        problems.append(f"missing tensors {['net.' + k for k in missing][:10]}")
    if extra:
        problems.append(
            f"unexpected tensors {extra[:10]} (extra tensors must belong to a group declared in "
            "'rill.groups')"
        )
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
    headers = _json_meta(meta, "rill.groups", p)
    model.net.load_state_dict(_check_weights(model, tensors, p, tuple(headers)))
    if len(config.shape) == 3:  # image nets: oneDNN's NHWC convolutions, 27% faster on CPU (emoji, batch 128)
        model.net.to(memory_format=torch.channels_last)
    model.info = _json_meta(meta, "rill.info", p)
    model.sampling = _json_meta(meta, "rill.sampling", p)
    base = net_fingerprint(model)
    for name, header in headers.items():
        group = TensorGroup.from_header(name, header, _group_tensors(tensors, name))
        group.check_fits(base, str(p))
        model.groups[name] = group
    return model.to(device).eval().requires_grad_(False)


def bundled_names() -> list[str]:
    """The models shipped in rill/assets/ ("digits", "emoji", "shapes"): its .safetensors files whose header
    holds a rill model config (the data files beside them, e.g. emoji-32, are not models)."""
    from importlib import resources

    assets = resources.files("rill") / "assets"
    if not assets.is_dir():
        return []
    names = []
    for p in assets.iterdir():
        if p.name.endswith(".safetensors"):
            with resources.as_file(p) as path:
                if is_model_file(path):
                    names.append(p.name[: -len(".safetensors")])
    return sorted(names)


def is_model_file(path: str | os.PathLike) -> bool:
    """A safetensors file with a rill model config in its header (read without touching the weights); a
    non-safetensors or corrupt file is simply not one."""
    from safetensors import safe_open

    try:
        with open(path, "rb") as f:
            if f.read(9)[8:9] != b"{":  # not even a safetensors header: never handed to a parser
                return False
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return "rill.model_config" in (f.metadata() or {})
    except Exception:  # a corrupt header
        return False


def bundled_file(name: str) -> Path:
    """The path of the bundled model NAME's file (rill/assets/NAME.safetensors; it may be missing), for
    callers that need the file itself (hashes, copies)."""
    from importlib import resources

    return Path(str(resources.files("rill") / "assets" / f"{name}.safetensors"))


def bundled_model(
    name: str, device: str | torch.device = "cpu", text_encoder: Any | None = None
) -> DiffusionModel:
    """A model shipped with rill (rill/assets/{name}.safetensors), e.g. "digits", "shapes". `text_encoder`:
    an already loaded encoder to share (models naming the same encoder can use one)."""
    from importlib import resources

    available = bundled_names()
    if name not in available:
        raise ValueError(f"no bundled model {name!r}; available: {available}")
    with resources.as_file(resources.files("rill") / "assets" / f"{name}.safetensors") as p:
        return load_model(p, device=device, text_encoder=text_encoder)


# --- atomic writes -----------------------------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """fsync `path`, first giving it the usual permissions (safetensors writes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_save_safetensors(
    tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """safetensors.save_file to a temporary name, fsync, then rename over `path`."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


# --- extra tensor groups ------------------------------------------------------------------------------------
def net_fingerprint(model: DiffusionModel) -> str:
    """A short hash of the backbone's architecture (config + every tensor's name and shape): the "base" a
    tensor group must have been made for."""
    cfg = json.dumps(config_to_dict(model.config)["net_overrides"], sort_keys=True)
    shapes = json.dumps(sorted((k, list(v.shape)) for k, v in model.net.state_dict().items()))
    return hashlib.sha256(f"{model.config.net}|{cfg}|{shapes}".encode()).hexdigest()[:16]


@dataclass
class TensorGroup:
    """A named set of extra tensors that belongs to one base backbone: a LoRA adapter, a control branch, …

    name: the tensor prefix in the file ("lora", "control", …; not "net"); kind: what reads it
    ("lora", "controlnet", …); base: net_fingerprint of the backbone it fits; meta: its own JSON settings
    (rank, alpha, target modules, …).
    """

    name: str
    kind: str
    tensors: dict[str, Tensor]
    base: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or "." in self.name or self.name == "net" or self.name.startswith("rill"):
            raise ValueError(
                f"tensor group name {self.name!r} is not allowed: use a short name without dots, not 'net'"
            )

    def header(self) -> dict[str, Any]:
        return {"kind": self.kind, "base": self.base, "meta": self.meta}

    @classmethod
    def from_header(cls, name: str, header: dict[str, Any], tensors: dict[str, Tensor]) -> TensorGroup:
        return cls(
            name, str(header.get("kind", "")), tensors, str(header.get("base", "")), header.get("meta", {})
        )

    def check_fits(self, base: str, where: str) -> None:
        if self.base != base:
            raise ValueError(
                f"{where}: tensor group {self.name!r} ({self.kind}) was made for the backbone {self.base}, "
                f"but this model's backbone is {base}; load it onto the model it was trained from"
            )


def _group_tensors(tensors: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    return {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")}


def _json_meta(meta: dict[str, str], key: str, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(meta.get(key, "{}"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the metadata entry {key!r} is not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the metadata entry {key!r} must be a JSON object")
    return value


def save_group(group: TensorGroup, path: str | os.PathLike) -> Path:
    """Write one tensor group on its own (an adapter file), atomically."""
    tensors = {f"{group.name}.{k}": v.detach().to("cpu").contiguous() for k, v in group.tensors.items()}
    meta = {"rill.format": GROUP_FORMAT, "rill.groups": json.dumps({group.name: group.header()})}
    return atomic_save_safetensors(tensors, path, meta)


def load_group(path: str | os.PathLike, model: DiffusionModel | None = None) -> TensorGroup:
    """Read a group file written by save_group; with `model`, refuse it unless it fits that backbone."""
    p = _check_safetensors_path(path)
    tensors, meta = read_safetensors(p)
    if meta.get("rill.format") != GROUP_FORMAT:
        raise ValueError(f"{p} is not a rill tensor-group file (rill.format={meta.get('rill.format')!r})")
    headers = _json_meta(meta, "rill.groups", p)
    if len(headers) != 1:
        raise ValueError(f"{p}: a group file holds exactly one group, found {sorted(headers)}")
    ((name, header),) = headers.items()
    group = TensorGroup.from_header(name, header, _group_tensors(tensors, name))
    if model is not None:
        group.check_fits(net_fingerprint(model), str(p))
    return group
