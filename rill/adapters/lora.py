"""LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", Eq. 3) through peft.

    W' = W + scale · (alpha / rank) · B A,   A (rank, in·k…), B (out, rank), B = 0 at the start

Training: `lora_net(net, rank=, alpha=, targets=)` is a copy of a backbone with peft's LoRA layers injected
(peft.inject_adapter_in_model) on the chosen nn.Linear / nn.Conv layers; only the LoRA factors train and B
starts at zero, so a fresh adapter changes nothing. `lora_tensors(peft_net)` are the factors to save (peft's
own state-dict names, "<module>.lora_A.weight" / "<module>.lora_B.weight"), `lora_meta(...)` their header.
Generation: `apply_loras(model, [(group, scale), ...])` merges one or several adapters into the backbone's
weights for the duration of a `with` block and puts back a saved copy of every touched tensor afterwards, so
the base weights come back bit for bit (never by subtracting the delta again). A group is anything with
`.kind == "lora"`, `.tensors` and `.meta` (rill.model.files.TensorGroup; its file checks the base model).
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..core.checks import check_positive_int

__all__ = ["LORA_KIND", "TARGET_PRESETS", "lora_targets", "lora_net", "lora_tensors", "lora_meta",
           "lora_delta", "merge_loras", "unmerge_loras", "apply_loras"]  # fmt: skip

LORA_KIND = "lora"
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_ATTENTION = re.compile(r"(^|\.)(attn|cross)\.(qkv|q|kv|proj)$")
# name -> what it selects (module names of the backbone, full paths)
TARGET_PRESETS = {
    "attention": "every projection of self- and cross-attention (qkv, q, kv, proj)",
    "text": "the text paths: cross-attention q/kv/proj and the pooled-text projection",
    "all": "every nn.Linear and convolution of the backbone",
}


def lora_targets(net: nn.Module, targets: str | Sequence[str] = "attention") -> list[str]:
    """Full module names of `net` to adapt: a preset (TARGET_PRESETS) or an explicit list of names."""
    layers = {name: m for name, m in net.named_modules() if isinstance(m, _LAYERS)}
    if isinstance(targets, str) and targets in TARGET_PRESETS:
        if targets == "attention":
            names = [n for n in layers if _ATTENTION.search(n)]
        elif targets == "text":
            names = [n for n in layers if re.search(r"(^|\.)cross\.(q|kv|proj)$|pooled_proj$", n)]
        else:
            names = list(layers)
        if not names:
            raise ValueError(f"LoRA targets={targets!r} selects no layer of this {type(net).__name__}")
        return names
    names = [targets] if isinstance(targets, str) else list(targets)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ValueError(
            f"LoRA targets {unknown[:5]} are not Linear/Conv layers of this backbone; use a preset "
            f"{list(TARGET_PRESETS)} or names such as {list(layers)[:4]}"
        )
    return names


def lora_net(
    net: nn.Module, *, rank: int, alpha: float, targets: str | Sequence[str] = "attention", seed: int = 0
) -> nn.Module:
    """A copy of `net` with peft LoRA layers on `targets` (B zero, A Kaiming-uniform from `seed`); only the
    LoRA factors require grad. `net` itself is not touched."""
    from peft import LoraConfig, inject_adapter_in_model

    check_positive_int("LoRA rank", rank)
    if not float(alpha) > 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}")
    names = lora_targets(net, targets)
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=names, lora_dropout=0.0)
    copied = copy.deepcopy(net).requires_grad_(False)
    with torch.random.fork_rng(devices=[]):  # peft draws A from the global generator
        torch.manual_seed(seed)
        out = inject_adapter_in_model(config, copied)
    for name, p in out.named_parameters():
        p.requires_grad_("lora_" in name)
    return out


def lora_tensors(peft_net: nn.Module) -> dict[str, Tensor]:
    """The LoRA factors of a lora_net, named as in peft's state dict ("<module>.lora_A.weight", …)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_net).items()}


def lora_meta(net: nn.Module, *, rank: int, alpha: float, targets: str | Sequence[str]) -> dict[str, Any]:
    """The header an adapter file carries: rank, alpha (so the scale alpha / rank is never lost), targets."""
    import peft

    return {"rank": int(rank), "alpha": float(alpha), "target_modules": lora_targets(net, targets),
            "peft_version": peft.__version__}  # fmt: skip


def lora_delta(a: Tensor, b: Tensor, scaling: float, weight_shape: torch.Size) -> Tensor:
    """scaling · B A shaped like the weight (peft's get_delta_weight): Linear (out, in) = B A; Conv: A is a
    k×k convolution to `rank` channels, B a 1×1 one, so the delta is B · A flattened over (in, k, …)."""
    a, b = a.float(), b.float()
    delta = b.flatten(1) @ a.flatten(1)  # (out, in·k…)
    return (scaling * delta).reshape(weight_shape)


def _check_group(group: Any, net: nn.Module) -> tuple[int, float, list[str]]:
    name = getattr(group, "name", "adapter")
    if getattr(group, "kind", None) != LORA_KIND:
        raise ValueError(f"tensor group {name!r} is a {getattr(group, 'kind', None)!r}, not a LoRA adapter")
    meta = group.meta
    missing = [k for k in ("rank", "alpha", "target_modules") if k not in meta]
    if missing:
        raise ValueError(f"LoRA adapter {name!r} has no {missing} in its header; it cannot be scaled safely")
    modules = dict(net.named_modules())
    for target in meta["target_modules"]:
        layer = modules.get(target)
        a, b = group.tensors.get(f"{target}.lora_A.weight"), group.tensors.get(f"{target}.lora_B.weight")
        if layer is None or a is None or b is None:
            raise ValueError(
                f"LoRA adapter {name!r}: target {target!r} is missing from the backbone or from the file"
            )
        if b.shape[0] != layer.weight.shape[0] or a[0].numel() != layer.weight[0].numel():
            raise ValueError(
                f"LoRA adapter {name!r}: {target} factors {tuple(b.shape)} x {tuple(a.shape)} do not fit the "
                f"weight {tuple(layer.weight.shape)}"
            )
    return int(meta["rank"]), float(meta["alpha"]), list(meta["target_modules"])


@torch.no_grad()
def merge_loras(model: nn.Module, adapters: Sequence[tuple[Any, float]]) -> dict[str, Tensor]:
    """Add scale · (alpha / rank) · B A of every (group, scale) to the backbone's weights, in place; returns a
    copy of each touched weight, as it was, for unmerge_loras. `model`: a DiffusionModel or a bare net."""
    net = getattr(model, "net", model)
    modules = dict(net.named_modules())
    checked = [(g, float(s), *_check_group(g, net)) for g, s in adapters]
    saved: dict[str, Tensor] = {}
    for group, scale, rank, alpha, targets in checked:
        for target in targets:
            weight = modules[target].weight
            if target not in saved:
                saved[target] = weight.detach().clone()
            a, b = group.tensors[f"{target}.lora_A.weight"], group.tensors[f"{target}.lora_B.weight"]
            delta = lora_delta(a.to(weight.device), b.to(weight.device), scale * alpha / rank, weight.shape)
            weight.copy_((weight.float() + delta).to(weight.dtype))
    return saved


@torch.no_grad()
def unmerge_loras(model: nn.Module, saved: dict[str, Tensor]) -> None:
    """Put back the weights merge_loras saved: the base tensors return bit for bit."""
    modules = dict(getattr(model, "net", model).named_modules())
    for target, weight in saved.items():
        modules[target].weight.copy_(weight)


@contextlib.contextmanager
def apply_loras(model: nn.Module, adapters: Sequence[tuple[Any, float]]) -> Iterator[nn.Module]:
    """`with apply_loras(model, [(group, 1.0), (other, 0.5)]):` the model generates with the adapters merged;
    on leaving the block (also on an error) every touched weight is restored exactly."""
    saved = merge_loras(model, adapters)
    try:
        yield model
    finally:
        unmerge_loras(model, saved)
