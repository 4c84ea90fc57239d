"""Training data plumbing: a deterministic, resumable, sharded batch order and the caption-embedding bank.

The order of the data is a pure function of (seed, step): one permutation of the n items per epoch, walked in
order; process r of w takes the r-th slice of each global batch. A resumed run therefore needs no data-loader
state, and the processes of a DDP run see disjoint shards of every batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["batch_indices", "ShardedBatches", "CaptionBank"]


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> Tensor:
    """Dataset indices of the global batch of `step`: a fresh permutation of the n items per epoch, walked in
    order, so the order depends only on (seed, step) and resuming needs no data-loader state."""
    pos = torch.arange(step * global_batch, (step + 1) * global_batch)
    epochs, within = pos // n, pos % n
    out = torch.empty_like(pos)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + e))
        sel = epochs == e
        out[sel] = perm[within[sel]]
    return out


class ShardedBatches:
    """This process's slice of each global batch; items are cached after the first read (datasets that render
    on the fly pay once)."""

    def __init__(self, dataset: Any, global_batch: int, seed: int, rank: int, world: int) -> None:
        if global_batch % world:
            raise ValueError(f"batch_size={global_batch} must be divisible by the {world} processes")
        self.dataset, self.global_batch, self.seed = dataset, global_batch, seed
        self.per_rank, self.rank = global_batch // world, rank
        self.captions = list(dataset.captions)
        self.images = getattr(dataset, "images", None)
        if not isinstance(self.images, Tensor) or len(self.images) != len(dataset):
            self.images = None
        self._cache: dict[int, Tensor] = {}

    def indices(self, step: int) -> Tensor:
        idx = batch_indices(step, len(self.dataset), self.global_batch, self.seed)
        return idx[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def get(self, step: int) -> tuple[Tensor, list[str], Tensor]:
        idx = self.indices(step)
        if self.images is not None:
            x0 = self.images[idx].float()
        else:
            for i in idx.tolist():
                if i not in self._cache:
                    self._cache[i] = torch.as_tensor(self.dataset[i][0]).float()
            x0 = torch.stack([self._cache[i] for i in idx.tolist()])
        return x0, [self.captions[i] for i in idx.tolist()], idx


class CaptionBank:
    """Every distinct caption (and "") encoded once up front; a batch's conditioning is a lookup.

    Banks of at least DISK_CACHE_MIN captions (emoji: 10,581, several CPU-minutes to encode) are also kept on
    disk, under $RILL_CACHE/captions (else ~/.cache/rill/captions), keyed by the encoder's spec and the
    captions, so a second run or a resume reads them back (the same tensors, bit for bit)."""

    DISK_CACHE_MIN = 2048

    def __init__(self, model: Any, captions: list[str], chunk: int = 256) -> None:
        enc = model.load_text_encoder()
        enc = getattr(enc, "encoder", enc)  # bypass CachedEncoder: the bank is the cache
        self.unique = sorted(set(captions) | {""})
        self.index = {c: i for i, c in enumerate(self.unique)}
        path = self._disk_path(enc) if len(self.unique) >= self.DISK_CACHE_MIN else None
        if path is not None and path.is_file():
            from safetensors.torch import load_file

            self.cond = load_file(str(path))
        else:
            parts = [enc.encode(self.unique[i : i + chunk]) for i in range(0, len(self.unique), chunk)]
            self.cond = {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}
            if path is not None:
                self._save(path)
        if "mask" in self.cond and "tokens" in self.cond:  # drop all-padding columns (masked anyway)
            length = int(self.cond["mask"].any(0).nonzero().max()) + 1
            for k in ("tokens", "mask"):
                self.cond[k] = self.cond[k][:, :length]

    def _disk_path(self, enc: Any) -> Path | None:
        spec = getattr(enc, "spec", None)
        if not isinstance(spec, dict):
            return None
        key = hashlib.sha256(json.dumps([spec, self.unique], sort_keys=True).encode()).hexdigest()[:20]
        root = Path(os.environ.get("RILL_CACHE") or Path.home() / ".cache" / "rill")
        return root / "captions" / f"{key}.safetensors"

    def _save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        save_file({k: v.contiguous() for k, v in self.cond.items()}, str(tmp))
        os.replace(tmp, path)  # atomic: a concurrent run reads the old state or the whole file

    def lookup(self, captions: list[str], drop: Tensor, device: torch.device) -> dict[str, Tensor]:
        ids = torch.tensor([self.index[c] for c in captions])
        ids = torch.where(drop, self.index[""], ids)  # caption dropout -> the unconditional embedding
        return {k: v[ids].to(device) for k, v in self.cond.items()}
