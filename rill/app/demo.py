"""`rill demo`: prompt grids from the bundled models and a denoising strip, in one folder with an index.md."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from safetensors import safe_open

from ..data.shapes import HELDOUT_COMBOS, parse_caption
from ..inference.generate import generate
from ..model.files import load_model
from ..viz.images import save_labeled_grid
from ..viz.strip import denoising_strip

__all__ = ["DEMO_SHAPES", "DEMO_EMOJI", "run_demo"]

# the shapes vocabulary of rill.data.shapes; rows with a held-out (colour, shape) pair are marked in the grid
DEMO_SHAPES = (
    "a large red circle in the center",
    "a small blue square in the top left",
    "a large white triangle in the bottom right",
    "a large blue circle to the left of a small red square",
    "a small white square above a large green circle",
    "a large green triangle in the center",
    "a large yellow circle in the bottom left",
    "a large purple square to the left of a small white circle",
)


# emoji prompts: training captions, held-out attribute x subject pairs (rill.data.emoji), and new phrasings
DEMO_EMOJI = (
    ("an emoji of cat face", ""),
    ("an emoji of red apple", ""),
    ("an emoji of rocket", ""),
    ("an emoji of ghost", ""),
    ("an emoji of waving hand, medium-dark skin tone", ""),
    ("an emoji of woman surfing, dark skin tone", "held out"),
    ("an emoji of green heart", "held out"),
    ("a smiling cat", "new words"),
    ("a picture of a slice of pizza", "new words"),
)


def _heldout(prompt: str) -> bool:
    return any((o["colour"], o["shape"]) in HELDOUT_COMBOS for o in parse_caption(prompt))


def _encoder_key(path: Path) -> str:
    """The text-encoder spec stored in a model file's metadata, as a comparable string ("null" for none)."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
    return json.dumps(json.loads(meta.get("rill.model_config", "{}")).get("text_encoder"), sort_keys=True)


def _load_bundled(names: Sequence[str]) -> dict[str, Any]:
    """The bundled models, sharing one text encoder between those whose configs name the same one (the
    encoder is loaded once: it is the slowest part of starting up)."""
    assets = resources.files("rill") / "assets"
    models: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    for name in names:
        with resources.as_file(assets / f"{name}.safetensors") as path:
            if not path.is_file():
                raise FileNotFoundError(
                    f"the bundled model {name!r} is not installed ({path} is missing); "
                    f"reinstall rill (pip install -e .) or train one: rill train --preset {name}"
                )
            key = _encoder_key(path)
            models[name] = load_model(path, text_encoder=shared.get(key))
            if key != "null":
                shared.setdefault(key, models[name].load_text_encoder())
    return models


def run_demo(
    out: str | Path = "rill-demo",
    *,
    nfe: int = 16,
    seed: int = 0,
    columns: int = 6,
    device: str | None = None,
    models: dict[str, Any] | None = None,
    log=print,
) -> dict[str, Path]:
    """The `rill demo` folder: digit, shape and emoji prompt grids, a denoising strip (PNG + GIF) and an
    index.md.

    Column j of every grid uses seed + j (same starting noise along a column: only the prompt changes).
    models: {"digits": model, "shapes": model, "emoji": model} to use instead of the bundled ones (without
    "emoji", no emoji grid).
    """
    out = Path(out)
    t0 = time.perf_counter()
    models = models or _load_bundled(["digits", "shapes", "emoji"])
    timings = {"load models + text encoder": time.perf_counter() - t0}
    written: dict[str, Path] = {}

    t = time.perf_counter()
    digit_prompts = [f"a handwritten digit {d}" for d in range(10)]
    digits = generate(models["digits"], digit_prompts, n=columns, nfe=nfe, seed=seed, device=device)
    written["digits"] = save_labeled_grid(digits, out / "digits.png", [str(d) for d in range(10)], scale=8)
    timings[f"digits: 10 prompts x {columns}"] = time.perf_counter() - t

    t = time.perf_counter()
    shapes = generate(models["shapes"], list(DEMO_SHAPES), n=columns, nfe=nfe, seed=seed, device=device)
    labels = [f"{p}{'  [held out]' if _heldout(p) else ''}" for p in DEMO_SHAPES]
    written["shapes"] = save_labeled_grid(shapes, out / "shapes.png", labels, scale=3)
    timings[f"shapes: {len(DEMO_SHAPES)} prompts x {columns}"] = time.perf_counter() - t

    if "emoji" in models:
        t = time.perf_counter()
        prompts = [p for p, _ in DEMO_EMOJI]
        emoji = generate(models["emoji"], prompts, n=columns, nfe=nfe, seed=seed, device=device)
        emoji_labels = [f"{p}{f'  [{k}]' if k else ''}" for p, k in DEMO_EMOJI]
        written["emoji"] = save_labeled_grid(emoji, out / "emoji.png", emoji_labels, scale=3)
        timings[f"emoji: {len(prompts)} prompts x {columns}"] = time.perf_counter() - t

    t = time.perf_counter()
    prompt = DEMO_SHAPES[3]
    strip = denoising_strip(models["shapes"], prompt, nfe=nfe, seed=seed, device=device)
    written["strip"] = strip.save(out / "denoising-strip.png", scale=3)
    written["gif"] = strip.save_gif(out / "denoising.gif", scale=4)
    timings["denoising strip + GIF"] = time.perf_counter() - t
    total = time.perf_counter() - t0

    lines = [
        "# rill demo",
        "",
        f"Bundled models, {nfe} denoiser evaluations per image (sampler 'auto'), column j "
        f"uses seed {seed} + j.",
        "",
        "## Digits: 'a handwritten digit N', rows 0-9",
        "",
        "![](digits.png)",
        "",
        "## Shapes ([held out] = a colour-shape pair never seen in training)",
        "",
        "![](shapes.png)",
        "",
    ]
    lines += [f"{i + 1}. {p}" for i, p in enumerate(labels)]
    if "emoji" in written:
        key = "[held out] = an attribute-subject pair never trained on; [new words] = no caption's phrasing"
        lines += ["", f"## Emoji ({key})", "", "![](emoji.png)", ""]
        lines += [f"{i + 1}. {p}" for i, p in enumerate(emoji_labels)]
    lines += [
        "",
        f"## Denoising: '{prompt}'",
        "",
        "Top row: the sample x (shown as x / sqrt(1 + σ²)); bottom row: the model's x̂0 = D(x; σ), which "
        "develops coarse to fine as σ falls.",
        "",
        "![](denoising-strip.png)",
        "",
        "![](denoising.gif)",
        "",
        "## Timings",
        "",
    ]
    lines += [f"- {k}: {v:.2f} s" for k, v in timings.items()] + [f"- total: {total:.2f} s", ""]
    written["index"] = out / "index.md"
    written["index"].write_text("\n".join(lines), encoding="utf-8")

    for k, v in timings.items():
        log(f"  {k:<32} {v:6.2f} s")
    log(f"  {'total':<32} {total:6.2f} s")
    log(f"wrote {out}/: " + ", ".join(p.name for p in written.values()))
    return written
