"""`rill info FILE`: what a model file holds, read from its header only (no weights are loaded)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import UserError, model_path, read_header

HELP = "what a model file holds (config, parameters, text encoder, training recipe) or a PNG's settings"


def add_arguments(i: argparse.ArgumentParser) -> None:
    i.add_argument(
        "checkpoint",
        help="a .safetensors model file, a training run's folder, a bundled name, or a rill generate PNG",
    )
    i.add_argument("--json", action="store_true", help="print JSON")


def describe(path: Path) -> dict:
    """What a model file holds, read from its header only (no weights are loaded)."""
    import json
    import math

    meta, shapes = read_header(path)
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
    info["recipe"] = _recipe(json.loads(meta.get("rill.info", "{}")), config.get("dataset", ""))
    return info


def _recipe(facts: dict, dataset: str) -> dict:
    """How the model was trained, from the file's rill.info (what `rill train` records at the end)."""
    recipe = {"data": facts.get("data", dataset) or "unknown"}
    if "wall_time" in facts:
        threads = f" on {facts['threads']} thread(s)" if "threads" in facts else ""
        recipe["wall time"] = f"{float(facts['wall_time']) / 60:.1f} min{threads}"
    for key in ("step", "images_seen", "batch_size", "lr", "lr_schedule", "seed"):
        if key in facts:
            recipe[key] = facts[key]
    if dataset in ("digits", "shapes"):
        recipe["more"] = f"rill/assets/MODELS.md and recipes/{dataset}.md"
    if len(recipe) == 1:
        recipe["training"] = "not recorded in this file"
    return recipe


def run(args: argparse.Namespace) -> int:
    import json

    if args.checkpoint.lower().endswith(".png"):  # the settings rill generate stored in the image
        from ..outputs import read_settings

        info = read_settings(args.checkpoint)
        info.pop("schema", None)
        again = f"rill generate --from {args.checkpoint}"
        print(json.dumps(info, indent=2) if args.json else _format_info({**info, "make it again": again}))
        return 0
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
