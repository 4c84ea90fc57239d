"""Non-leaky augmentation for small image sets (Karras et al. 2022, App. B.5): a training image is shifted
by a few pixels, and the net is told by how much (cond["augment"]), so it learns shifted digits as a
separate task instead of drawing them. Sampling passes no label, which the net reads as "not augmented"
(rill.nets.layers.CondEmbedding), so the shifts never leak into generated images while the shared features
gain from them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["AUGMENT_DIM", "shift_augment", "add_augment_label", "augment_batch"]

AUGMENT_DIM = 2  # the label: (dx, dy) / max_shift, 0 where the image is untouched


def add_augment_label(cfg) -> None:
    """Give the net of TrainConfig `cfg` the label input its augment_p needs (cfg.model.net_overrides, in
    place; nothing when augment_p is 0). Call it before the model is built."""
    if cfg.augment_p > 0:
        cfg.model.net_overrides = {**(cfg.model.net_overrides or {}), "augment_dim": AUGMENT_DIM}


def augment_batch(
    x0: Tensor, cond: dict | None, cfg, generator: torch.Generator, device: torch.device | str = "cpu"
) -> tuple[Tensor, dict | None]:
    """A training batch (on the CPU, where `generator` draws) as TrainConfig `cfg` wants it: shifted, and
    labelled in cond["augment"] on `device`, when augment_p > 0; else unchanged."""
    if cfg.augment_p <= 0:
        return x0, cond
    x0, label = shift_augment(x0, cfg.augment_shift, cfg.augment_p, generator)
    return x0, {**(cond or {}), "augment": label.to(device)}


def shift_augment(x0: Tensor, max_shift: int, p: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Shift each image (B, C, H, W) with probability p by integer (dx, dy) in [-max_shift, max_shift]²,
    filling with the replicated border (the background of digits, shapes and emoji). Returns the images and
    the (B, 2) label (dx, dy) / max_shift."""
    if x0.ndim != 4:
        raise ValueError(f"shift augmentation is for images (B, C, H, W); got shape {tuple(x0.shape)}: "
                         "set augment_p=0 for this data")  # fmt: skip
    b, s = x0.shape[0], max_shift
    on = torch.rand(b, generator=generator) < p
    d = torch.randint(-s, s + 1, (b, 2), generator=generator) * on[:, None]
    padded = F.pad(x0, (s, s, s, s), mode="replicate")
    h, w = x0.shape[-2:]
    out = x0.clone()
    for dx, dy in d.unique(dim=0).tolist():
        rows = (d[:, 0] == dx) & (d[:, 1] == dy)
        # output pixel (i, j) is input (i - dy, j - dx): the content moves right by dx and down by dy
        out[rows] = padded[rows, :, s - dy : s - dy + h, s - dx : s - dx + w]
    return out, d.to(x0.dtype) / s
