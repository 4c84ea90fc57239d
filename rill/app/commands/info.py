"""`rill info FILE`: what a model file holds, read from its header only (no weights are loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import UserError, model_path

HELP = "what a model file holds: config, parameters, text encoder, recipe"


def add_arguments(i: argparse.ArgumentParser) -> None:
    i.add_argument("checkpoint", help="a .safetensors model file, a training run's folder, or a bundled name")
    i.add_argument("--json", action="store_true", help="print JSON")


def describe(path: Path) -> dict:
    """What a model file holds, read from its header only (no weights are loaded)."""
    import json
    import math

    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    if "rill.model_config" not in meta:
        raise UserError(
            f"{path} is a safetensors file but not a rill model (no 'rill.model_config' metadata; "
            f"keys: {sorted(meta)}); rill train writes model files that have it"
        )
    config = json.loads(meta["rill.model_config"])
    net = config.pop("net_overrides", {})
    params = sum(math.prod(s) for k, s in shapes.items() if k.startswith("net."))
    info = {
        "file": str(path),
        "size": f"{path.stat().st_size / 2**20:.2f} MiB",
        "format": meta.get("rill.format", "?"),
        "parameters": f"{params:,} in {sum(k.startswith('net.') for k in shapes)} tensors",
        "text encoder": config.pop("text_encoder", None) or "none (unconditional)",
        "model": config,
        "backbone": net,
    }
    if "rill.info" in meta:
        info["training"] = json.loads(meta["rill.info"])
    return info


def run(args: argparse.Namespace) -> int:
    import json

    info = describe(model_path(args.checkpoint))
    print(json.dumps(info, indent=2, default=str) if args.json else _format_info(info))
    return 0


def _format_info(info: dict) -> str:
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
