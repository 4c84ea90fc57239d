"""Adapters at generation time: LoRA files (`FILE[:scale]`, several at once) merged for the duration of a
`with` block, and the base model's fingerprint checked before anything is touched.

    with loras(model, ["pink.safetensors:0.8", "star.safetensors"]):
        images = generate(model, "a small pink circle in the center")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..adapters.lora import LORA_KIND, apply_loras
from ..model.files import TensorGroup, load_group, net_fingerprint

__all__ = ["parse_adapter_spec", "load_lora", "loras"]


def parse_adapter_spec(spec: str) -> tuple[str, float]:
    """'FILE' -> (FILE, 1.0); 'FILE:0.5' -> (FILE, 0.5). A suffix that is not a number stays in the path."""
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def load_lora(path: str | Path, model: Any) -> TensorGroup:
    """A LoRA group file for `model`: refused (one line) when it was made for another base or is not LoRA."""
    group = load_group(path, model)
    if group.kind != LORA_KIND:
        raise ValueError(f"{path} holds a {group.kind!r} group, not a LoRA adapter (kind {LORA_KIND!r})")
    return group


@contextlib.contextmanager
def loras(model: Any, specs: Sequence[str | tuple[str | Path | TensorGroup, float]]) -> Iterator[Any]:
    """Merge the adapters `specs` ('FILE[:scale]' strings, or (file or group, scale) pairs) into `model` for
    the block; its weights come back bit for bit afterwards (rill.adapters.lora.apply_loras)."""
    adapters = []
    for spec in specs:
        source, scale = parse_adapter_spec(spec) if isinstance(spec, str) else spec
        group = source if isinstance(source, TensorGroup) else load_lora(source, model)
        group.check_fits(net_fingerprint(model), f"LoRA {getattr(source, 'name', source)}")
        adapters.append((group, float(scale)))
    with apply_loras(model, adapters):
        yield model
