"""Procedural RGB scenes of one or two coloured shapes, with compositional captions and a held-out split.

Captions (one template per scene kind, so `parse_caption` inverts them exactly):
    one shape:   "a {size} {colour} {shape} in the {position}"
                 e.g. "a small red circle in the top left"
    two shapes:  "a {size} {colour} {shape} {relation} a {size} {colour} {shape}"
                 e.g. "a large blue square to the left of a small yellow triangle"
Held out (compositional generalisation): the (colour, shape) pairs in HELDOUT_COMBOS never appear in the
"train" split, neither alone nor in a pair; split="heldout" gives only scenes containing one of them
(single-shape scenes: the subject; two-shape scenes: at least one of the two); split="all" samples every pair.

A scene is a list of 1 or 2 object dicts (coordinates are fractions of the image side, x right, y down):
    "shape", "colour", "size"   words from SHAPES, COLOURS, SIZES
    "position"                  the 3x3 grid cell (POSITIONS) holding the object's centre
    "relation"                  first object of a pair: "to the left of" | "above" (first REL second),
                                else None
    "center", "extent"          bounding-box centre (x, y) and half-size
A sample is generated on demand from an RNG seeded by (seed, split, index): building a dataset costs nothing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rill.core.checks import check_choice, check_positive_int

__all__ = [
    "COLOURS", "SHAPES", "SIZES", "POSITIONS", "RELATIONS", "HELDOUT_COMBOS", "TRAIN_COMBOS", "BACKGROUND",
    "ShapesDataset", "render_scene", "parse_caption", "scene_caption", "semantic_scene", "place_scene",
    "grid_position",
]  # fmt: skip

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 45, 45),
    "green": (50, 190, 70),
    "blue": (50, 100, 245),
    "yellow": (245, 225, 40),
    "purple": (155, 65, 215),
    "orange": (250, 140, 25),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.11, "large": 0.19}  # nominal half-extent, fraction of the image side
_ROWS = (("top", 0.2), ("", 0.5), ("bottom", 0.8))
_COLS = (("left", 0.2), ("", 0.5), ("right", 0.8))
# 3x3 grid: name -> nominal centre (x, y); the middle cell is "center"
POSITIONS: dict[str, tuple[float, float]] = {
    (f"{r} {c}".strip() or "center"): (x, y) for r, y in _ROWS for c, x in _COLS
}
RELATIONS = ("to the left of", "above")
HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (
    ("green", "triangle"),
    ("yellow", "circle"),
    ("purple", "square"),
    ("orange", "triangle"),
)
ALL_COMBOS = tuple((c, s) for c in COLOURS for s in SHAPES)
TRAIN_COMBOS = tuple(p for p in ALL_COMBOS if p not in HELDOUT_COMBOS)
BACKGROUND = (18, 18, 26)
SPLITS = ("train", "heldout", "all")
_SUPERSAMPLE = 4
_JITTER_POS, _JITTER_SIZE = 0.04, 0.05


def grid_position(x: float, y: float) -> str:
    """Name of the 3x3 grid cell holding the point (x, y) (fractions of the side, y down)."""
    row = _ROWS[min(int(y * 3), 2)][0]
    col = _COLS[min(int(x * 3), 2)][0]
    return f"{row} {col}".strip() or "center"


def _obj(shape: str, colour: str, size: str, relation: str | None = None) -> dict[str, Any]:
    for name, value, allowed in (
        ("shape", shape, SHAPES),
        ("colour", colour, COLOURS),
        ("size", size, SIZES),
    ):
        check_choice(name, value, allowed)
    return {"shape": shape, "colour": colour, "size": size, "position": None, "relation": relation}


def place_scene(scene: Sequence[dict[str, Any]], rng: random.Random | None = None) -> list[dict[str, Any]]:
    """Add geometry ("center", "extent", grid "position") to a semantic scene.

    rng=None gives the canonical layout (nominal sizes, cell centres); with an rng, positions jitter by up to
    ±0.04 of the side and sizes by ±5%. Objects stay inside the image and the two of a pair never overlap.
    """
    u = (lambda a, b: (a + b) / 2) if rng is None else rng.uniform
    out = [_obj(o["shape"], o["colour"], o["size"], o.get("relation")) for o in scene]
    for o in out:
        o["extent"] = SIZES[o["size"]] * u(1 - _JITTER_SIZE, 1 + _JITTER_SIZE)
    if len(out) == 1:
        pos = scene[0].get("position")
        if pos not in POSITIONS:
            raise ValueError(f"position {pos!r} is not one of {tuple(POSITIONS)}")
        x, y = POSITIONS[pos]
        centres = [(x + u(-_JITTER_POS, _JITTER_POS), y + u(-_JITTER_POS, _JITTER_POS))]
    elif len(out) == 2:
        rel = out[0]["relation"]
        if rel not in RELATIONS:
            raise ValueError(f"relation {rel!r} is not one of {RELATIONS}")
        along = (u(0.2, 0.3), u(0.7, 0.8))  # separation >= 0.4 > the sum of two large half-extents
        base = u(0.3, 0.7)
        across = (base + u(-0.05, 0.05), base + u(-0.05, 0.05))
        centres = list(zip(along, across)) if rel == "to the left of" else list(zip(across, along))
    else:
        raise ValueError(f"a scene has 1 or 2 objects, got {len(out)}")
    for o, (x, y) in zip(out, centres):
        e = o["extent"]
        o["center"] = (min(max(x, e), 1 - e), min(max(y, e), 1 - e))
        o["position"] = grid_position(*o["center"])
    return out


def semantic_scene(scene: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The part of a scene that its caption states (what `parse_caption` returns); geometry dropped."""
    keys = ("shape", "colour", "size", "position", "relation")
    out = [{k: o.get(k) for k in keys} for o in scene]
    if len(out) == 2:  # positions of a pair are implied by the relation, not stated
        for o in out:
            o["position"] = None
    return out


def scene_caption(scene: Sequence[dict[str, Any]]) -> str:
    """The caption of a scene (the templates in the module docstring)."""

    def noun(o: dict[str, Any]) -> str:
        return f"a {o['size']} {o['colour']} {o['shape']}"

    if len(scene) == 1:
        return f"{noun(scene[0])} in the {scene[0]['position']}"
    if len(scene) == 2:
        return f"{noun(scene[0])} {scene[0]['relation']} {noun(scene[1])}"
    raise ValueError(f"a scene has 1 or 2 objects, got {len(scene)}")


def _alt(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_NOUN = rf"a ({_alt(SIZES)}) ({_alt(COLOURS)}) ({_alt(SHAPES)})"
_SINGLE = re.compile(rf"{_NOUN} in the ({_alt([*POSITIONS, 'centre'])})")
_PAIR = re.compile(rf"{_NOUN} ({_alt(RELATIONS)}) {_NOUN}")


def parse_caption(caption: str) -> list[dict[str, Any]]:
    """Inverse of `scene_caption`: caption -> semantic scene. Case, spaces and a final '.' are ignored."""
    text = " ".join(caption.lower().strip().rstrip(".").split())
    if m := _SINGLE.fullmatch(text):
        size, colour, shape, pos = m.groups()
        return [{**_obj(shape, colour, size), "position": "center" if pos == "centre" else pos}]
    if m := _PAIR.fullmatch(text):
        s0, c0, h0, rel, s1, c1, h1 = m.groups()
        return [_obj(h0, c0, s0, rel), _obj(h1, c1, s1)]
    raise ValueError(
        f"caption {caption!r} does not follow the shapes templates: 'a SIZE COLOUR SHAPE in the POSITION' or "
        f"'a SIZE COLOUR SHAPE RELATION a SIZE COLOUR SHAPE' with SIZE in {tuple(SIZES)}, COLOUR in "
        f"{tuple(COLOURS)}, SHAPE in {SHAPES}, POSITION in {tuple(POSITIONS)}, RELATION in {RELATIONS}"
    )


def render_scene(scene: Sequence[dict[str, Any]], image_size: int = 32) -> np.ndarray:
    """Draw a scene as a uint8 (H, W, 3) array: drawn at 4x, then box-downsampled (anti-aliased).

    A semantic scene (no "center"/"extent", e.g. from `parse_caption`) is drawn in its canonical layout.
    """
    from PIL import Image, ImageDraw

    if any("center" not in o or "extent" not in o for o in scene):
        scene = place_scene(scene)
    big = image_size * _SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in scene:
        x, y, e = o["center"][0] * big, o["center"][1] * big, o["extent"] * big
        fill = COLOURS[o["colour"]]
        if o["shape"] == "circle":
            draw.ellipse([x - e, y - e, x + e, y + e], fill=fill)
        elif o["shape"] == "square":
            draw.rectangle([x - e, y - e, x + e, y + e], fill=fill)
        elif o["shape"] == "triangle":
            draw.polygon([(x, y - e), (x + e, y + e), (x - e, y + e)], fill=fill)
        else:
            raise ValueError(f"shape {o['shape']!r} is not one of {SHAPES}")
    img = img.resize((image_size, image_size), Image.Resampling.BOX)
    return np.array(img, dtype=np.uint8)  # a writable copy


class ShapesDataset(Dataset):
    """(image (3, S, S) float in [-1, 1], caption) of generated scenes; S = image_size (32 or 64).

    n scenes; `two_shape_fraction` of them hold a pair. split: "train" (default; no held-out pair anywhere),
    "heldout" (every scene holds a held-out pair) or "all". `scene(i)` gives the structured description.
    """

    def __init__(
        self,
        n: int = 20000,
        image_size: int = 32,
        seed: int = 0,
        split: str = "train",
        two_shape_fraction: float = 0.5,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"shapes: split={split!r} is not one of {SPLITS}")
        if not isinstance(image_size, int) or image_size < 16:
            raise ValueError(
                f"shapes: image_size must be an int >= 16 (32 or 64 intended), got {image_size!r}"
            )
        check_positive_int("shapes: n", n, exact=True)
        if not 0.0 <= two_shape_fraction <= 1.0:
            raise ValueError(f"shapes: two_shape_fraction must be in [0, 1], got {two_shape_fraction}")
        self.n, self.image_size, self.seed, self.split = n, image_size, seed, split
        self.two_shape_fraction = two_shape_fraction
        self.image_shape = (3, image_size, image_size)
        self._captions: list[str] | None = None

    def __len__(self) -> int:
        return self.n

    def _index(self, i: int) -> int:
        if not -self.n <= i < self.n:
            raise IndexError(f"shapes: index {i} out of range for {self.n} scenes")
        return i % self.n

    def scene(self, i: int) -> list[dict[str, Any]]:
        """Structured description of scene i (see the module docstring)."""
        rng = random.Random(f"shapes:{self.seed}:{self.split}:{self._index(i)}")
        pairs = {"train": TRAIN_COMBOS, "heldout": HELDOUT_COMBOS, "all": ALL_COMBOS}[self.split]
        sizes = tuple(SIZES)
        if rng.random() >= self.two_shape_fraction:
            colour, shape = rng.choice(pairs)
            obj = {**_obj(shape, colour, rng.choice(sizes)), "position": rng.choice(tuple(POSITIONS))}
            return place_scene([obj], rng)
        first = rng.choice(pairs)
        others = TRAIN_COMBOS if self.split == "train" else ALL_COMBOS
        second = rng.choice([p for p in others if p != first])
        if rng.random() < 0.5:
            first, second = second, first
        relation = rng.choice(RELATIONS)
        objs = [
            _obj(first[1], first[0], rng.choice(sizes), relation),
            _obj(second[1], second[0], rng.choice(sizes)),
        ]
        return place_scene(objs, rng)

    def caption(self, i: int) -> str:
        return scene_caption(self.scene(i))

    @property
    def captions(self) -> list[str]:
        """All n captions (built on first access: scene descriptions only, no rendering)."""
        if self._captions is None:
            self._captions = [self.caption(i) for i in range(self.n)]
        return self._captions

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        scene = self.scene(i)
        image = torch.from_numpy(render_scene(scene, self.image_size)).permute(2, 0, 1)  # (3, S, S) uint8
        return image.float() / 127.5 - 1.0, scene_caption(scene)

    def __repr__(self) -> str:
        return f"ShapesDataset(n={self.n}, image_size={self.image_size}, split={self.split!r})"
