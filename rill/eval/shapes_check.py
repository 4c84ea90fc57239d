"""An exact, programmatic prompt-adherence checker for the shapes dataset: it reads colour, shape, size and
position (or the pair's relation) back from the pixels and compares them with the caption.

Per image (uint8-like RGB in [-1, 1] or [0, 255]):
1. coverage α ∈ [0, 1] of each pixel = its colour distance from the background over the distance of the
   brightest nearby named colour; objects = 8-connected components of α > 0.5 (tiny specks dropped);
2. colour = the named colour (COLOURS) nearest to the mean of the component's core pixels (α > 0.8);
3. shape from normalised central moments of the α-map: a triangle (apex up) is skewed in y (its third moment),
   a square's E[x²y²] / (E[x²]E[y²]) is 1 (x and y independent) where a disc's is 2/3;
4. size from the area Σα against each shape's area formula (circle π e², square 4 e², triangle 2 e²), cut at
   the geometric mean of the two nominal half-extents;
5. position = the 3x3 cell of the bounding-box centre (a triangle's centroid sits e/3 below it); for a pair,
   "A to the left of B" / "A above B" compares the two centres.
`check_scene` validates itself on the dataset's own renders (tests/test_eval_adherence.py: ≥ 99% right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["detect_objects", "check_image", "check_images", "is_heldout_prompt"]

_ATTRS = ("colour", "shape", "size")


def _shapes_module():
    from rill.data import shapes

    return shapes


def _to_uint8_hwc(image: Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) in [-1, 1] (torch) or (H, W, 3) uint8 (numpy) -> (H, W, 3) float64 in [0, 255]."""
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) image tensor in [-1, 1], got shape {tuple(image.shape)}")
        return ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).double().numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got shape {arr.shape}")
    return arr.astype(np.float64)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    try:
        from scipy import ndimage
    except ImportError as e:  # pragma: no cover - scipy is in rill[all]
        raise ImportError("the shapes checker needs scipy (pip install scipy)") from e
    return ndimage.label(mask, structure=np.ones((3, 3), dtype=int))


def detect_objects(
    image: Tensor | np.ndarray,
    min_area: float = 0.004,
    colours: dict[str, tuple[int, int, int]] | None = None,
    masks: bool = False,
) -> list[dict[str, Any]]:
    """The objects in one shapes image, largest first: dicts with "colour", "shape", "size", "position",
    "center" (x, y as fractions of the side), "extent" (half-size) and "area" (fraction of the image).
    Components with a soft area below `min_area` of the image are ignored (specks). `colours`: the named
    RGB palette to read colours with (default: the dataset's COLOURS; pass more, e.g. a colour an adapter
    taught, to recognise it too). masks=True adds "mask": the (H, W) bool support of the object."""
    sh = _shapes_module()
    rgb = _to_uint8_hwc(image)  # (H, W, 3)
    h, w, _ = rgb.shape
    bg = np.asarray(sh.BACKGROUND, dtype=np.float64)
    colours = sh.COLOURS if colours is None else colours
    names = list(colours)
    palette = np.asarray([colours[c] for c in names], dtype=np.float64)  # (K, 3)
    diff = rgb - bg  # (H, W, 3)
    # coverage against each named colour: projection of (p − bg) on (C_k − bg), best-fitting colour per pixel
    axes = palette - bg  # (K, 3)
    proj = np.einsum("hwc,kc->hwk", diff, axes) / (axes**2).sum(1)  # (H, W, K)
    resid = np.linalg.norm(diff[:, :, None, :] - proj[..., None] * axes[None, None], axis=-1)  # (H, W, K)
    best = resid.argmin(-1)  # (H, W) best-fitting named colour per pixel
    alpha = np.clip(np.take_along_axis(proj, best[..., None], -1)[..., 0], 0, 1)  # (H, W)
    labels, count = _components(alpha > 0.5)
    objects = []
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs, ys = (xs + 0.5) / w, (ys + 0.5) / h  # pixel centres as fractions of the side
    for region in _split_by_colour(labels, count, best, alpha):
        # soft support: the component dilated by one pixel, so anti-aliased edges count with their coverage
        support = _dilate(region)
        a = np.where(support, alpha, 0.0)
        area = a.sum() / (h * w)
        if area < min_area:
            continue
        core = region & (alpha > 0.8)
        mean_rgb = rgb[core if core.any() else region].mean(0)
        colour = names[int(np.linalg.norm(palette - mean_rgb, axis=1).argmin())]
        m = a.sum()
        cx, cy = (a * xs).sum() / m, (a * ys).sum() / m
        dx, dy = xs - cx, ys - cy
        vx, vy = (a * dx**2).sum() / m, (a * dy**2).sum() / m
        skew_y = (a * dy**3).sum() / m / max(vy, 1e-12) ** 1.5
        cross = (a * dx**2 * dy**2).sum() / m / max(vx * vy, 1e-12)
        if skew_y < -0.3:  # a triangle with its apex up: mass below the centroid is wider (skew −0.57 exact)
            shape, k_area = "triangle", 2.0
        elif cross > 5 / 6:  # square: E[x²y²] = E[x²]E[y²] (ratio 1); disc: ratio 2/3
            shape, k_area = "square", 4.0
        else:
            shape, k_area = "circle", math.pi
        extent = math.sqrt(area / k_area)
        small, large = sh.SIZES["small"], sh.SIZES["large"]
        size = "small" if extent < math.sqrt(small * large) else "large"
        centre = (cx, cy - extent / 3 if shape == "triangle" else cy)
        objects.append(
            {
                "colour": colour,
                "shape": shape,
                "size": size,
                "center": centre,
                "extent": extent,
                "area": area,
                "position": sh.grid_position(*centre),
                **({"mask": support} if masks else {}),
            }
        )
    return sorted(objects, key=lambda o: -o["area"])


def _split_by_colour(
    labels: np.ndarray, count: int, best: np.ndarray, alpha: np.ndarray, share: float = 0.25
) -> list[np.ndarray]:
    """Component masks; a component whose core holds two named colours, each >= `share` of it, is split in
    two (two touching objects of different colours)."""
    regions = []
    for k in range(1, count + 1):
        region = labels == k
        core = region & (alpha > 0.8)
        colours, counts = np.unique(best[core], return_counts=True)
        order = np.argsort(-counts)
        if len(order) >= 2 and counts[order[1]] >= share * counts.sum():
            c0, c1 = colours[order[0]], colours[order[1]]
            for c in (c0, c1):  # pixels of other colours go with neither (edge blends, specks)
                sub, n = _components(region & (best == c))
                regions.extend(sub == j for j in range(1, n + 1))
        else:
            regions.append(region)
    return regions


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= out[:, :-1].copy()
    out[:, :-1] |= out[:, 1:].copy()
    return out


def _matches(found: dict[str, Any], wanted: dict[str, Any]) -> dict[str, bool]:
    return {a: found[a] == wanted[a] for a in _ATTRS}


def check_image(image: Tensor | np.ndarray, caption: str | Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Does one image show what its caption says? Returns per-attribute booleans and "correct" (all of them):
    "count" (as many objects as stated), "colour", "shape", "size" (every object right), "position" (one
    shape) or "relation" (pair)."""
    sh = _shapes_module()
    wanted = sh.parse_caption(caption) if isinstance(caption, str) else list(caption)
    found = detect_objects(image)
    out: dict[str, Any] = {"count": len(found) == len(wanted), "found": found}
    if len(wanted) == 1:
        hit = _matches(found[0], wanted[0]) if found else dict.fromkeys(_ATTRS, False)
        out.update(hit, position=bool(found) and found[0]["position"] == wanted[0]["position"])
        keys = ("count", *_ATTRS, "position")
    else:
        out.update(dict.fromkeys(_ATTRS, False), relation=False)
        if len(found) >= 2:
            a, b = found[0], found[1]
            # pair the two largest detections with the two caption objects the way that agrees best
            straight = [_matches(a, wanted[0]), _matches(b, wanted[1])]
            swapped = [_matches(b, wanted[0]), _matches(a, wanted[1])]
            score = lambda pair: sum(sum(m.values()) for m in pair)  # noqa: E731
            (m0, m1), (first, second) = (
                (swapped, (b, a)) if score(swapped) > score(straight) else (straight, (a, b))
            )
            out.update({k: m0[k] and m1[k] for k in _ATTRS})
            if wanted[0]["relation"] == "to the left of":
                out["relation"] = bool(first["center"][0] < second["center"][0])
            else:
                out["relation"] = bool(first["center"][1] < second["center"][1])
        keys = ("count", *_ATTRS, "relation")
    out["correct"] = all(bool(out[k]) for k in keys)
    return out


def is_heldout_prompt(caption: str) -> bool:
    """True when the caption names a held-out (colour, shape) pair (HELDOUT_COMBOS)."""
    sh = _shapes_module()
    return any((o["colour"], o["shape"]) in sh.HELDOUT_COMBOS for o in sh.parse_caption(caption))


def check_images(images: Tensor, captions: Sequence[str]) -> dict[str, Any]:
    """Adherence over a batch: fractions of images right overall and per attribute, for all prompts and for
    the prompts that name a held-out pair ("heldout"; None when there are none). (N, 3, H, W) in [-1, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"shapes adherence needs (N, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    if len(captions) != images.shape[0]:
        raise ValueError(
            f"got {images.shape[0]} images but {len(captions)} captions; pass one caption per image"
        )
    rows = [check_image(img, cap) for img, cap in zip(images, captions)]
    held = [is_heldout_prompt(c) for c in captions]

    def summary(sel: list[dict[str, Any]]) -> dict[str, float] | None:
        if not sel:
            return None
        keys = ("correct", "count", *_ATTRS, "position", "relation")
        return {
            k: float(np.mean([bool(r[k]) for r in sel if k in r])) for k in keys if any(k in r for r in sel)
        }

    return {
        "all": summary(rows),
        "heldout": summary([r for r, h in zip(rows, held) if h]),
        "seen": summary([r for r, h in zip(rows, held) if not h]),
        "per_image": [bool(r["correct"]) for r in rows],
    }
