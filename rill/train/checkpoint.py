"""Checkpoints that never lose work: safetensors + JSON only, written atomically, verified, pruned safely.

A checkpoint is a folder OUT/checkpoints/step-00001000/ holding
    model.safetensors      training weights (a self-describing rill model file, loadable with load_model)
    ema.safetensors        EMA weights (same format)
    optimizer.safetensors  the optimizer's tensors, flattened ("state.<param>.<key>")
    optimizer.json         the rest of the optimizer state (param groups, non-tensor state)
    rng.safetensors        torch CPU (and CUDA) generator states as uint8 tensors
    rng.json               Python `random` and NumPy global RNG states
    state.json             step, images seen, wall time, the training config
    manifest.json          size + SHA-256 of every file above (written last)
It is written to a hidden temporary folder, every file and the folder are fsync'ed, then it is renamed into
place; it is re-opened and verified before any older checkpoint is deleted (keep-last-k). Loading reads only
safetensors and JSON: a pickle, whatever its name, is refused without being run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..model.files import FORMAT, fsync_dir, fsync_file, read_safetensors

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "verify_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "flatten_optimizer_state",
    "unflatten_optimizer_state",
    "capture_rng",
    "restore_rng",
    "StopFlag",
    "CheckpointError",
]

_STEP_DIR = re.compile(r"^step-(\d+)$")
_FILES = (
    "model.safetensors",
    "ema.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "rng.safetensors",
    "rng.json",
    "state.json",
)


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or not made of safetensors/JSON."""


# --- optimizer state as safetensors + JSON ------------------------------------------------------------------
def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """torch optimizer state_dict -> (tensors "state.<param>.<key>", JSON with param_groups and scalars)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in state_dict["state"].items():
        for key, value in st.items():
            if isinstance(value, Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().clone()  # a snapshot, not a view
            elif isinstance(value, (int, float, bool, str)) or value is None:
                scalars.setdefault(str(pid), {})[key] = value
            else:
                raise TypeError(
                    f"optimizer state {pid}.{key} has type {type(value).__name__}; only tensors and "
                    "JSON scalars can be saved without pickle"
                )
    meta = {
        "param_groups": state_dict["param_groups"],
        "scalars": scalars,
        "param_ids": sorted(state_dict["state"], key=int),
    }
    return tensors, meta


def unflatten_optimizer_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of flatten_optimizer_state: a dict for optimizer.load_state_dict."""
    state: dict[int, dict[str, Any]] = {int(pid): {} for pid in meta.get("param_ids", [])}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# --- RNG states ---------------------------------------------------------------------------------------------
def capture_rng(
    generators: dict[str, torch.Generator] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, JSON) of the global torch CPU/CUDA RNGs, named torch generators, Python and NumPy RNGs."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["torch_cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    for name, g in (generators or {}).items():
        tensors[f"gen.{name}"] = g.get_state()
    version, mt, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    meta = {
        "python": {"version": version, "state": list(mt), "gauss_next": gauss},
        "numpy": {
            "kind": np_kind,
            "keys": np_keys.tolist(),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
    }
    return tensors, meta


def restore_rng(
    tensors: dict[str, Tensor], meta: dict[str, Any], generators: dict[str, torch.Generator] | None = None
) -> None:
    """Restore what capture_rng saved (generators by name; missing names are left alone)."""
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        states = list(tensors["torch_cuda"])
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    for name, g in (generators or {}).items():
        if f"gen.{name}" in tensors:
            g.set_state(tensors[f"gen.{name}"])
    py = meta["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    n = meta["numpy"]
    np.random.set_state(
        (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )


# --- checkpoints --------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly."""

    step: int
    model: dict[str, Tensor]  # backbone state_dict (training weights)
    optimizer: dict[str, Any]  # for optimizer.load_state_dict
    rng_tensors: dict[str, Tensor]
    rng_meta: dict[str, Any]
    state: dict[str, Any]  # JSON: step, images_seen, wall_time, config, ...
    ema: dict[str, Tensor] | None = None
    model_metadata: dict[str, str] = field(default_factory=dict)  # safetensors metadata of the model files
    path: Path | None = None


def checkpoints_root(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "checkpoints"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(out_dir: str | os.PathLike, ckpt: Checkpoint, keep_last: int = 3) -> Path:
    """Write `ckpt` atomically as OUT/checkpoints/step-N, verify it, then prune to the newest `keep_last`."""
    root = checkpoints_root(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{ckpt.step:08d}"
    if final.exists():
        try:
            verify_checkpoint(final)
            return final  # the same step is already safely on disk
        except CheckpointError:
            shutil.rmtree(final)  # a broken folder at our name cannot be the last good checkpoint
    tmp = root / f".step-{ckpt.step:08d}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    from safetensors.torch import save_file

    meta = {"rill.format": FORMAT, **ckpt.model_metadata}
    opt_tensors, opt_meta = flatten_optimizer_state(ckpt.optimizer)
    files: dict[str, Any] = {
        "model.safetensors": ({f"net.{k}": v for k, v in ckpt.model.items()}, meta),
        "optimizer.safetensors": (opt_tensors, None),
        "rng.safetensors": (ckpt.rng_tensors, None),
        "optimizer.json": opt_meta,
        "rng.json": ckpt.rng_meta,
        "state.json": {**ckpt.state, "step": ckpt.step},
    }
    if ckpt.ema is not None:
        files["ema.safetensors"] = ({f"net.{k}": v for k, v in ckpt.ema.items()}, meta)
    for name, content in files.items():
        if name.endswith(".safetensors"):
            tensors, md = content
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / name), metadata=md
            )
        else:
            (tmp / name).write_text(json.dumps(content), encoding="utf-8")
        fsync_file(tmp / name)
    manifest = {n: {"bytes": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in sorted(files)}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    fsync_file(tmp / "manifest.json")
    fsync_dir(tmp)
    os.replace(tmp, final)
    fsync_dir(root)
    verify_checkpoint(final)  # re-open and check before anything older is deleted
    _prune(root, keep_last, keep=final)
    return final


def _prune(root: Path, keep_last: int, keep: Path) -> None:
    valid = [p for p in list_checkpoints(root.parent) if p != keep]
    for old in valid[: max(0, len(valid) - (keep_last - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*.tmp-*"):  # leftovers of a crash mid-write (never a finished checkpoint)
        pid = stale.name.rsplit("-", 1)[-1]
        if pid != str(os.getpid()):
            shutil.rmtree(stale, ignore_errors=True)


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check that every file is present, matches the manifest, and parses (safetensors/JSON). Returns the
    manifest; raises CheckpointError naming the problem."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise CheckpointError(f"{path}: no manifest.json (incomplete or not a rill checkpoint)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{mpath}: not valid JSON ({e})") from e
    required = set(_FILES) - {"ema.safetensors"}
    if not required <= set(manifest):
        raise CheckpointError(f"{path}: manifest lacks {sorted(required - set(manifest))}")
    for name, info in manifest.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{path}: {name} is missing")
        if f.stat().st_size != info["bytes"] or _sha256(f) != info["sha256"]:
            raise CheckpointError(f"{path}: {name} does not match its manifest entry (corrupt or modified)")
        try:
            if name.endswith(".safetensors"):
                read_safetensors(f)
            else:
                json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: {name} is unreadable: {e}") from e
    return manifest


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint folders under OUT/checkpoints, oldest first (by step; not verified)."""
    root = checkpoints_root(out_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint that verifies; broken ones are skipped with a warning."""
    for path in reversed(list_checkpoints(out_dir)):
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError as e:
            warnings.warn(f"skipping invalid checkpoint: {e}", stacklevel=2)
    return None


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint folder (verified first). Only safetensors and JSON are read."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: a checkpoint is a folder of safetensors + JSON files (see rill.checkpoint);"
            " single-file checkpoints such as .pt/.ckpt pickles are never loaded"
        )
    verify_checkpoint(path)
    model, meta = read_safetensors(path / "model.safetensors")
    ema = None
    if (path / "ema.safetensors").is_file():
        ema = {k[len("net.") :]: v for k, v in read_safetensors(path / "ema.safetensors")[0].items()}
    opt_tensors, _ = read_safetensors(path / "optimizer.safetensors")
    opt = unflatten_optimizer_state(
        opt_tensors, json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
    )
    rng_tensors, _ = read_safetensors(path / "rng.safetensors")
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return Checkpoint(
        step=int(state["step"]),
        model={k[len("net.") :]: v for k, v in model.items()},
        optimizer=opt,
        rng_tensors=rng_tensors,
        rng_meta=json.loads((path / "rng.json").read_text(encoding="utf-8")),
        state=state,
        ema=ema,
        model_metadata={k: v for k, v in meta.items() if k != "rill.format"},
        path=path,
    )


class StopFlag:
    """Context manager: SIGINT/SIGTERM set `.signum` so a loop can save at its next step boundary and stop
    (a second SIGINT aborts at once). Handlers are installed in the main thread only and restored on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        msg = "saving a checkpoint at the end of this step, then stopping (Ctrl-C again: abort, no save)"
        print(f"\n{signal.Signals(signum).name}: {msg}", file=sys.stderr, flush=True)

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
