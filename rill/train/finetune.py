"""Fine-tuning on top of a trained model with its backbone frozen: LoRA adapters and control branches.

    group = finetune_lora(model, FinetuneConfig(data="folder:pink", steps=300), rank=4, alpha=4)
    save_group(group, "pink.safetensors")          # rill.model.files: kind "lora", rank/alpha/targets + base

Only the adapter's parameters train (AdamW); the loss is the model's own parametrisation loss (rill.core.
parametrisations) built on the adapted backbone, the data order and the noise come from rill.train.batches
and one CPU generator (deterministic for a seed). Nothing here changes the model passed in.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..adapters.control import CONTROL_KIND, ControlBranch, ControlledNet, control_map
from ..adapters.lora import LORA_KIND, lora_meta, lora_net, lora_tensors
from ..core.checks import check_int, check_range
from ..core.parametrisations import get_parametrisation
from ..data import load_dataset
from ..model.bundle import DiffusionModel
from ..model.files import TensorGroup, net_fingerprint
from .batches import CaptionBank, ShardedBatches

__all__ = ["FinetuneConfig", "finetune_lora", "finetune_control", "finetune_data", "fit_adapter"]


@dataclass
class FinetuneConfig:
    """One fine-tuning run of an adapter on a frozen base model."""

    data: str = "shapes"  # rill.data.load_dataset spec (folder:PATH for your own captioned images)
    filter: str | None = None  # keep only the items whose caption contains this text
    limit: int | None = None  # keep at most this many items (after the filter); None = all
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3  # AdamW, constant after a short warm-up
    warmup_steps: int = 20
    grad_clip: float = 1.0
    caption_dropout: float = 0.0  # 0 keeps the unconditional branch of guidance as the base model's
    p_mean: float = -1.2  # EDM training σ: ln σ ~ N(p_mean, p_std²)
    p_std: float = 1.2
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every"):
            check_int(name, getattr(self, name), 1)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_int("seed", self.seed, 0)
        if self.limit is not None:
            check_int("limit", self.limit, 1)
        check_range("lr", self.lr, 0.0, math.inf, lo_open=True)
        check_range("caption_dropout", self.caption_dropout, 0.0, 1.0)


class _Subset:
    """Items of a dataset by index, with their captions (what ShardedBatches reads)."""

    def __init__(self, dataset: Any, keep: list[int]) -> None:
        self.dataset, self.keep = dataset, keep
        self.captions = [dataset.captions[i] for i in keep]

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.keep[i]]

    def source_index(self, i: int) -> int:
        return self.keep[i]

    def scene(self, source: int) -> Any:
        """The structured scene of item `source` of the underlying dataset (shapes), else None."""
        scene = getattr(self.dataset, "scene", None)
        return scene(source) if callable(scene) else None


def finetune_data(model: DiffusionModel, cfg: FinetuneConfig) -> _Subset:
    """The dataset named by cfg.data at the model's sample size, filtered and limited; a clear error when
    nothing is left or the samples do not fit the model. A folder:PATH of images is read at the model's
    channel count (1: grey, 3: RGB) and size (shorter side resized to it, centre crop; rill.data.folder)."""
    shape = tuple(model.config.shape)
    kw = {"image_size": int(shape[-1])} if len(shape) == 3 else {}
    kind = cfg.data.partition(":")[0]
    if kind == "folder":
        from ..data.folder import CHANNELS

        if len(shape) != 3 or shape[0] not in CHANNELS or shape[1] != shape[2]:
            raise ValueError(
                f"--data {cfg.data}: image folders give square grey (1, S, S) or RGB (3, S, S) samples, but "
                f"the model makes {shape}"
            )  # fmt: skip
        kw["channels"] = int(shape[0])
    if kind == "shapes" and cfg.limit:  # enough scenes, without captioning 20,000
        kw["n"] = min(20_000, max(cfg.limit * 50, 1000)) if cfg.filter else cfg.limit
    try:
        dataset = load_dataset(cfg.data, **kw)
    except TypeError:
        dataset = load_dataset(cfg.data)
    keep = [i for i, c in enumerate(dataset.captions) if cfg.filter is None or cfg.filter in c]
    keep = keep[: cfg.limit] if cfg.limit else keep
    if not keep:
        raise ValueError(f"--data {cfg.data} --filter {cfg.filter!r}: no item's caption contains the filter")
    got = tuple(torch.as_tensor(dataset[keep[0]][0]).shape)
    if got != shape:
        raise ValueError(f"--data {cfg.data} gives samples of shape {got}, but the model makes {shape}")
    return _Subset(dataset, keep)


def fit_adapter(
    model: DiffusionModel,
    net: nn.Module,
    params: list[nn.Parameter],
    data: _Subset,
    cfg: FinetuneConfig,
    before_step: Callable[[Tensor, list[int]], None] | None = None,
    log: Callable[[str], None] = print,
    on_log: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train `params` of `net` (the adapted backbone) with the model's parametrisation loss on `data`.
    before_step(x0, source_indices) can set per-batch inputs (a control image); on_log(step) runs at every
    log line (e.g. an adherence probe; it may switch `net` to eval, it is set back to train). Returns the
    loss curve."""
    precond = get_parametrisation(model.config.parametrisation).build(net, model.config.param_settings())
    batches = ShardedBatches(data, cfg.batch_size, cfg.seed, 0, 1)
    bank = CaptionBank(model, batches.captions) if model.conditional else None
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = model.device
    losses, t0 = [], time.perf_counter()
    net.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        x0, captions, idx = batches.get(step)
        x0 = x0.to(device)
        cond = None
        if bank is not None:
            drop = torch.rand(len(captions), generator=gen) < cfg.caption_dropout
            cond = bank.lookup(captions, drop, device)
        if before_step is not None:
            before_step(x0, [data.source_index(i) for i in idx.tolist()])
        loss = precond.loss(x0, cond, generator=gen, p_mean=cfg.p_mean, p_std=cfg.p_std).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tuning loss is {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            recent = sum(losses[-cfg.log_every :]) / len(losses[-cfg.log_every :])
            log(f"step {step + 1}/{cfg.steps}  loss {recent:.4f}  {time.perf_counter() - t0:.1f} s")
            if on_log is not None:
                on_log(step + 1)
                net.train()
    net.eval()
    return {"losses": losses, "wall_s": time.perf_counter() - t0, "items": len(data)}


def finetune_lora(
    model: DiffusionModel,
    cfg: FinetuneConfig,
    *,
    rank: int = 4,
    alpha: float = 4.0,
    targets: str | list[str] = "attention",
    name: str = "lora",
    log: Callable[[str], None] = print,
) -> TensorGroup:
    """Train a LoRA adapter (rill.adapters.lora) on cfg.data; the base model is not changed. The group's meta
    holds rank, alpha, the target modules and the run's facts; its base is the model's net_fingerprint."""
    data = finetune_data(model, cfg)
    net = lora_net(model.net, rank=rank, alpha=alpha, targets=targets, seed=cfg.seed)
    params = [p for p in net.parameters() if p.requires_grad]
    log(f"LoRA rank {rank}, alpha {alpha}: {sum(p.numel() for p in params):,} trainable parameters on "
        f"{len(data)} items of {cfg.data}")  # fmt: skip
    facts = fit_adapter(model, net, params, data, cfg, log=log)
    meta = {**lora_meta(model.net, rank=rank, alpha=alpha, targets=targets),
            "data": cfg.data, "filter": cfg.filter, "items": facts["items"], "steps": cfg.steps,
            "seed": cfg.seed, "final_loss": sum(facts["losses"][-20:]) / len(facts["losses"][-20:]),
            "wall_s": round(facts["wall_s"], 1)}  # fmt: skip
    return TensorGroup(name, LORA_KIND, lora_tensors(net), net_fingerprint(model), meta)


def finetune_control(
    model: DiffusionModel,
    cfg: FinetuneConfig,
    *,
    kind: str = "layout",
    hidden: int = 16,
    name: str = "control",
    log: Callable[[str], None] = print,
    on_log: Callable[[int, ControlledNet], None] | None = None,
) -> TensorGroup:
    """Train a ControlNet-style branch (rill.adapters.control) on control maps of `kind` derived from each
    training item (its scene for "layout", its pixels for "edges"); the base stays frozen and unchanged.
    on_log(step, controlled_net) can probe adherence while it trains (steps to convergence)."""
    data = finetune_data(model, cfg)
    control_map(kind, torch.zeros(model.config.shape), data.scene(data.source_index(0)))  # fails early
    base = copy.deepcopy(model.net).requires_grad_(False).eval()  # its grads never touch the caller's model
    branch = ControlBranch(base, control_channels=1, hidden=hidden).to(model.device)
    net = ControlledNet(base, branch)
    params = list(branch.parameters())
    log(f"control branch ({kind}): {sum(p.numel() for p in params):,} trainable parameters on {len(data)} "
        f"items of {cfg.data}")  # fmt: skip

    def set_maps(x0: Tensor, sources: list[int]) -> None:
        net.control = torch.stack([control_map(kind, x.cpu(), data.scene(i)) for x, i in zip(x0, sources)])

    probe = None if on_log is None else (lambda step: on_log(step, net))
    facts = fit_adapter(model, net, params, data, cfg, before_step=set_maps, log=log, on_log=probe)
    base.eval()
    meta = {"control": kind, "control_channels": 1, "hidden": hidden, "data": cfg.data, "filter": cfg.filter,
            "items": facts["items"], "steps": cfg.steps, "seed": cfg.seed, "lr": cfg.lr,
            "final_loss": sum(facts["losses"][-20:]) / len(facts["losses"][-20:]),
            "wall_s": round(facts["wall_s"], 1)}  # fmt: skip
    tensors = {k: v.detach().cpu().clone() for k, v in branch.state_dict().items()}
    return TensorGroup(name, CONTROL_KIND, tensors, net_fingerprint(model), meta)
