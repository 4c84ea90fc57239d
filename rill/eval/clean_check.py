"""How clean a shapes picture is, away from its shapes: background speckle and 4×4-patch blobs.

The shapes renderer draws every scene on one flat colour (rill.data.shapes.BACKGROUND), so anything else in
the background is the model's:
- background std: the pixels farther than `margin` pixels from the shapes (below), their std around their own
  mean colour, in [-1, 1] units, averaged over the three channels. Real renders: 0 up to float rounding.
- patch blobs: the 4×4 windows (at every alignment, not only the net's patch grid) lying in that background
  whose mean colour is more than `threshold` (Euclidean, RGB in [-1, 1]) away from BACKGROUND; windows that
  overlap or touch count as one blob. A window mean averages speckle out (16 pixels), so isolated noisy
  pixels never make a blob; a patch-sized smudge of colour does.
The shapes are the caption's: the `len(parse_caption(caption))` largest objects that shapes_check detects
(its soft support, dilated by `margin`); without a caption, every detected object of at least half the area
of the smallest shape the data set draws. An extra object the caption does not ask for counts as a blob.
Tests: tests/test_clean_check.py (real renders: 0 blobs; planted blobs and speckle: found and measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

from .shapes_check import detect_objects

__all__ = ["background_mask", "background_std", "patch_blobs", "check_clean", "clean_summary",
           "BLOB_THRESHOLD", "MARGIN"]  # fmt: skip

# window-mean colour distance from the background, RGB in [-1, 1] (0.2 ≈ 25 grey levels); the noisiest
# background of the shipped model's speckle alone reaches 0.16 (docs/clean-pictures.md)
BLOB_THRESHOLD = 0.2
MARGIN = 2  # pixels around each shape left out of the background (anti-aliased and soft edges)
PATCH = 4  # the window side: the bundled shapes U-Net's patch size


def _to_unit(image: Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) tensor in [-1, 1] or (H, W, 3) uint8 -> (3, H, W) float64 in [-1, 1]."""
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) image tensor in [-1, 1], got shape {tuple(image.shape)}")
        return image.detach().float().cpu().clamp(-1, 1).double().numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got shape {arr.shape}")
    return arr.astype(np.float64).transpose(2, 0, 1) / 127.5 - 1.0


def _smallest_shape_area() -> float:
    from rill.data import shapes as sh

    e = min(sh.SIZES.values()) * (1 - sh._JITTER_SIZE)
    return 2.0 * e * e  # a small triangle, the smallest thing the data set draws (fraction of the image)


def background_mask(
    image: Tensor | np.ndarray, caption: str | None = None, margin: int = MARGIN
) -> np.ndarray:
    """(H, W) bool: True where the picture should show the flat background (see the module docstring)."""
    from scipy import ndimage

    from rill.data.shapes import parse_caption

    objects = detect_objects(image, masks=True)
    if caption is not None:
        objects = objects[: len(parse_caption(caption))]
    else:
        objects = [o for o in objects if o["area"] >= 0.5 * _smallest_shape_area()]
    h, w = image.shape[1:] if isinstance(image, Tensor) else np.asarray(image).shape[:2]
    shapes = np.zeros((h, w), dtype=bool)
    for o in objects:
        shapes |= o["mask"]
    if margin and shapes.any():
        shapes = ndimage.binary_dilation(shapes, structure=np.ones((3, 3), bool), iterations=margin)
    return ~shapes


def background_std(image: Tensor | np.ndarray, caption: str | None = None, margin: int = MARGIN) -> float:
    """Std of the background pixels around their mean colour (mean of the channels' variances, square root),
    [-1, 1] units; NaN when fewer than 16 background pixels remain."""
    x, bg = _to_unit(image), background_mask(image, caption, margin)
    if bg.sum() < PATCH * PATCH:
        return float("nan")
    return float(np.sqrt(x[:, bg].var(axis=1).mean()))


def patch_blobs(
    image: Tensor | np.ndarray,
    caption: str | None = None,
    threshold: float = BLOB_THRESHOLD,
    margin: int = MARGIN,
) -> list[dict[str, Any]]:
    """The patch blobs of one image: dicts with "center" (x, y as fractions of the side), "windows" (how many
    4×4 windows it spans), "deviation" (its largest window-mean distance from the background) and "on_grid"
    (its strongest window sits on the 4×4 patch grid)."""
    from scipy import ndimage

    from rill.data.shapes import BACKGROUND

    x, bg = _to_unit(image), background_mask(image, caption, margin)
    dev = x - (np.asarray(BACKGROUND, dtype=np.float64) / 127.5 - 1.0)[:, None, None]  # (3, H, W)
    h, w, p = *bg.shape, PATCH
    means = _window_sums(dev, p) / (p * p)  # (3, H − p + 1, W − p + 1)
    dist = np.linalg.norm(means, axis=0)  # (H − p + 1, W − p + 1)
    inside = _window_sums(bg[None].astype(np.float64), p)[0] == p * p  # all 16 pixels are background
    hits = (dist > threshold) & inside
    labels, count = ndimage.label(hits, structure=np.ones((3, 3), dtype=int))
    blobs = []
    for k in range(1, count + 1):
        region = labels == k
        d = np.where(region, dist, -1.0)
        i, j = np.unravel_index(int(d.argmax()), d.shape)
        blobs.append(
            {
                "center": ((j + p / 2) / w, (i + p / 2) / h),
                "windows": int(region.sum()),
                "deviation": float(dist[i, j]),
                "on_grid": bool(i % p == 0 and j % p == 0),
            }
        )
    return sorted(blobs, key=lambda b: -b["deviation"])


def _window_sums(a: np.ndarray, p: int) -> np.ndarray:
    """Sums over every p×p window of (C, H, W), by a summed-area table: (C, H − p + 1, W − p + 1)."""
    s = np.pad(a.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    return s[:, p:, p:] - s[:, :-p, p:] - s[:, p:, :-p] + s[:, :-p, :-p]


def check_clean(image: Tensor | np.ndarray, caption: str | None = None) -> dict[str, Any]:
    """{"background_std", "blobs"} of one image."""
    return {"background_std": background_std(image, caption), "blobs": patch_blobs(image, caption)}


def clean_summary(images: Tensor, captions: Sequence[str] | None = None) -> dict[str, Any]:
    """Over a batch (N, 3, H, W) in [-1, 1]: mean background std, the fraction of images with at least one
    patch blob, the blob count, and the per-image values."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"the cleanliness check needs (N, 3, H, W) RGB images, got {tuple(images.shape)}")
    if captions is not None and len(captions) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(captions)} captions; pass one per image")
    caps = list(captions) if captions is not None else [None] * images.shape[0]
    rows = [check_clean(img, cap) for img, cap in zip(images, caps)]
    stds = np.asarray([r["background_std"] for r in rows], dtype=np.float64)
    counts = [len(r["blobs"]) for r in rows]
    return {
        "background_std": float(np.nanmean(stds)) if np.isfinite(stds).any() else None,
        "blob_images": float(np.mean([c > 0 for c in counts])),
        "blobs": int(sum(counts)),
        "images": len(rows),
        "threshold": BLOB_THRESHOLD,
        "per_image_std": [round(float(v), 5) for v in stds],
        "per_image_blobs": counts,
    }
