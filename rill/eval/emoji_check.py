"""Judges for the emoji model, trained on the real renders only or read straight from the pixels.

- subject: a FeatureCNN with one class per subject (the tone, gender and hair variants of a subject share
  its class, so "waving hand" is recognised whatever its tone), trained on the 3,527 real renders with
  augmentation (per-image shifts up to 2 px, zoom 0.85-1.15, blur, noise: generated images are softer than
  renders) and cached like the feature nets (`subject_judge`); `SubjectJudge.accuracy_on_real` validates it
  on fresh augmentations of the renders.
- seen subjects: the SEEN_SUBJECTS subjects whose recognition is scored (the rule: `seen_subjects`).
- skin tone and colour: count the pixels near each reference colour (the five tones' skin and the untoned
  yellow; or the colour names of hearts, circles and squares), calibrated on the renders (`palette`); the
  most-counted reference is the reading (`read_palette`).
- background speckle: the std of a generated image's pixels where the prompted emoji's real render is white
  background at least BG_MARGIN px from the emoji and the image is white after a 5x5 median filter
  (`background_std`); real renders: 1.5e-05 (rill eval emoji's table).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .features import FeatureCNN, cached_net, train_classifier

__all__ = ["SubjectJudge", "subject_judge", "augment", "seen_subjects", "palette", "read_palette",
           "real_emoji", "background_std", "SEEN_SUBJECTS", "TONE_NONE", "BG_MARGIN"]  # fmt: skip

SEEN_SUBJECTS = 100
TONE_NONE = "none"  # the untoned (yellow) skin: a reading that matches no tone
RADIUS = 20.0  # a pixel counts for its nearest reference colour when it is within this RGB distance
BG_MARGIN = 2  # pixels around the emoji left out of its background (anti-aliased edges, a larger drawing)
MEDIAN, WHITE = 5, 0.8  # background = white ([-1, 1] units) after a 5x5 median filter of the generated image
AUGMENT = {"shift": 2, "zoom": 0.15, "blur": 1.0, "noise": 0.1}  # the judge's training augmentation
RECIPE = {"version": 1, "dataset": "emoji", "classes": "subject", "split": "all", "epochs": 30, "width": 32,
          "seed": 0, "augment": AUGMENT}  # fmt: skip


@lru_cache(maxsize=1)
def real_emoji() -> tuple[Tensor, list[dict[str, Any]]]:
    """Every real render once, (E, 3, 32, 32) in [-1, 1], and its entry (char, name, subject, attributes,
    heldout), in the dataset's entry order. Cached: read them, do not modify them."""
    from rill.data import load_dataset

    ds = load_dataset("emoji", split="all", templates=1)
    return ds.images.float(), ds.entries


def augment(x: Tensor, g: torch.Generator, strength: float = 1.0) -> Tensor:
    """Per image: a shift of up to AUGMENT["shift"] px and a zoom (white fills the border), a mix with a
    3x3 box blur and Gaussian noise, each drawn from `g` and scaled by `strength`. (B, 3, H, W) in [-1, 1]."""
    b, _, h, _ = x.shape
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    zoom = 1 + strength * AUGMENT["zoom"] * (2 * u(b) - 1)
    shift = strength * AUGMENT["shift"] * (2 * u(b, 2) - 1) * 2 / h  # in grid units (the side is 2)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1  # outside: -1 ...
    x = torch.where(grid.abs().amax(-1, keepdim=True).permute(0, 3, 1, 2) > 1, torch.ones_like(x), x)  # white
    mix = (strength * AUGMENT["blur"] * u(b)).view(-1, 1, 1, 1)
    x = (1 - mix) * x + mix * F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    std = (strength * AUGMENT["noise"] * u(b)).view(-1, 1, 1, 1)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(-1, 1)


class SubjectJudge:
    """`predict(images)` -> subject index per image (into `subjects`); `labels[e]` the subject of entry e."""

    def __init__(self, net: FeatureCNN, entries: list[dict[str, Any]]):
        self.net = net
        self.subjects = sorted({e["subject"] for e in entries})
        index = {s: i for i, s in enumerate(self.subjects)}
        self.labels = torch.tensor([index[e["subject"]] for e in entries])

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 256) -> Tensor:
        chunks = range(0, len(images), batch_size)
        return torch.cat([self.net(images[i : i + batch_size]).argmax(1) for i in chunks])

    def accuracy_on_real(self, entries: Sequence[int] | None = None, seed: int = 1, rounds: int = 2) -> float:
        """Recognised fraction of `rounds` fresh augmentations (seeds other than training's) of the real
        renders of `entries` (default all)."""
        images, _ = real_emoji()
        idx = torch.arange(len(images)) if entries is None else torch.as_tensor(entries)
        g = torch.Generator().manual_seed(1000 + seed)
        hits = [(self.predict(augment(images[idx], g)) == self.labels[idx]).float() for _ in range(rounds)]
        return float(torch.cat(hits).mean())


def subject_judge(directory: str | None = None, log: bool = True, recipe: dict[str, Any] | None = None):
    """The cached subject classifier ($RILL_CACHE/eval/emoji-subjects.*; trained once, a few CPU minutes).
    `recipe` overrides RECIPE's fields (tests train a tiny one)."""
    recipe = {**RECIPE, **(recipe or {})}
    images, entries = real_emoji()
    judge = SubjectJudge(None, entries)  # type: ignore[arg-type]

    def train() -> FeatureCNN:
        return train_classifier(
            images,
            judge.labels,
            epochs=recipe["epochs"],
            width=recipe["width"],
            seed=recipe["seed"],
            shift=0,  # augment() shifts each image on its own
            augment=augment,
            log=log,
        )

    name = "emoji-subjects" if recipe == RECIPE else f"emoji-subjects-{_digest(recipe)}"
    judge.net = cached_net(name, recipe, train, directory, log, "the emoji subject classifier")
    return judge


def _digest(obj: Any) -> str:
    return hashlib.sha256(repr(sorted(obj.items())).encode()).hexdigest()[:8]


@lru_cache(maxsize=2)
def seen_subjects(count: int = SEEN_SUBJECTS) -> tuple[int, ...]:
    """Entry indices of `count` seen subjects, one entry each. Rule: each subject's base entry is its first
    training entry without a tone or gender (else its first training entry); a subject is distinctive when its
    base render (2x2-averaged to 16x16) is farther from every render of every other subject than the median
    subject's is; the distinctive subjects are ordered by sha256 of their name and the first `count` taken."""
    images, entries = real_emoji()
    base: dict[str, int] = {}
    for i, e in enumerate(entries):
        better = e["subject"] not in base or _plain(e) and not _plain(entries[base[e["subject"]]])
        if not e["heldout"] and better:
            base[e["subject"]] = i
    small = F.avg_pool2d(images, 2).flatten(1)  # (E, 768)
    subjects = sorted(base)
    picked = small[[base[s] for s in subjects]]
    dist = torch.cdist(picked, small)  # (S, E)
    of = {s: k for k, s in enumerate(subjects)}
    label = torch.tensor([of.get(e["subject"], -1) for e in entries])  # -1: a subject with no training entry
    same = label[None, :] == torch.arange(len(subjects))[:, None]  # (S, E)
    nearest = dist.masked_fill(same, float("inf")).amin(1)
    keep = [s for s, d in zip(subjects, nearest.tolist()) if d > float(nearest.median())]
    keep.sort(key=lambda s: hashlib.sha256(f"rill-eval-emoji:{s}".encode()).hexdigest())
    if len(keep) < count:
        raise ValueError(f"only {len(keep)} distinctive seen subjects; asked for {count}")
    return tuple(base[s] for s in keep[:count])


def _plain(e: dict[str, Any]) -> bool:
    return e["skin_tone"] is None and e["gender"] is None


def _groups(kind: str, entries: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Entry indices per reference: "skin_tone" -> the five tones (single-tone emoji) + TONE_NONE (the untoned
    form of a subject that has tones); "colour" -> each colour name but white (white is the background)."""
    out: dict[str, list[int]] = {}
    if kind == "skin_tone":
        toned = {(e["subject"], e["gender"], e["hair"]) for e in entries if e["skin_tone"] is not None}
        for i, e in enumerate(entries):
            if isinstance(e["skin_tone"], str):
                out.setdefault(e["skin_tone"], []).append(i)
            elif e["skin_tone"] is None and (e["subject"], e["gender"], e["hair"]) in toned:
                out.setdefault(TONE_NONE, []).append(i)
        return out
    if kind == "colour":
        for i, e in enumerate(entries):
            if e["colour"] not in (None, "white"):
                out.setdefault(e["colour"], []).append(i)
        return out
    raise ValueError(f"no pixel reader for {kind!r}; known: skin_tone, colour")


def _uint8(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H·W, 3) float RGB in [0, 255]."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(0, 2, 3, 1).reshape(len(x), -1, 3).numpy()


@lru_cache(maxsize=4)
def palette(kind: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, (K, 3) RGB references) calibrated on the renders: for each group (`_groups`), the 16-level
    colour bin that its renders hold most more often than any other group's do (its signature); the
    reference is the mean of the renders' pixels in that bin."""
    images, entries = real_emoji()
    groups = _groups(kind, entries)
    names = tuple(groups)
    rgb = {k: _uint8(images[v]) for k, v in groups.items()}  # (n, P, 3) each
    codes = {k: (p // 16).astype(int) @ np.array([256, 16, 1]) for k, p in rgb.items()}  # (n, P)
    # (K, 4096): how many pixels of each bin a render of the group holds on average
    hist = np.stack([np.bincount(codes[k].ravel(), minlength=4096) / len(codes[k]) for k in names])
    refs = []
    for i, k in enumerate(names):
        signature = int(np.argmax(hist[i] - np.delete(hist, i, 0).max(0)))
        refs.append(rgb[k][codes[k] == signature].mean(0))
    return names, np.stack(refs)


def read_palette(images: Tensor, kind: str) -> list[str | None]:
    """Per image the reference (`palette(kind)`) that most pixels are nearest to, within RADIUS; None when no
    pixel is near any reference."""
    names, refs = palette(kind)
    px = _uint8(images)  # (N, P, 3)
    dist = np.linalg.norm(px[:, :, None, :] - refs[None, None], axis=-1)  # (N, P, K)
    near = dist.argmin(-1)
    counted = np.where(dist.min(-1) < RADIUS, near, -1)
    counts = np.stack([(counted == k).sum(1) for k in range(len(names))], 1)  # (N, K)
    return [names[int(c.argmax())] if c.max() > 0 else None for c in counts]


def background_std(images: Tensor, entries: Sequence[int]) -> list[float]:
    """Speckle on the white background, per image: the std (around their own mean, averaged over RGB, [-1, 1]
    units) of its pixels where the real render of entry `entries[i]` is white at least BG_MARGIN px from the
    emoji AND the image itself is white after a MEDIAN-px median filter (isolated specks survive the filter's
    mask and count; a misdrawn or shifted emoji is left to subject recognition); nan when no pixel is left."""
    renders = real_emoji()[0][torch.as_tensor(list(entries), dtype=torch.long)]
    fg = (renders < 0.96).any(1, keepdim=True).float()  # (N, 1, H, W): the emoji and its anti-aliased rim
    bg = F.max_pool2d(fg, 2 * BG_MARGIN + 1, 1, BG_MARGIN)[:, 0] == 0
    x = images.detach().float().cpu()
    n, c, h, w = x.shape
    windows = F.unfold(F.pad(x, [MEDIAN // 2] * 4, mode="replicate"), MEDIAN)  # (N, C·M², H·W)
    smooth = windows.view(n, c, MEDIAN * MEDIAN, h, w).median(2).values  # (N, C, H, W)
    bg = bg & (smooth.amin(1) >= WHITE)
    out = []
    for img, mask in zip(x, bg):
        px = img[:, mask]  # (3, K)
        out.append(float(px.std(1, unbiased=False).mean()) if px.shape[1] > 1 else float("nan"))
    return out
