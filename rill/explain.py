"""Pictures that show what a model does: image grids, the denoising strip and a GIF of the denoising.

Images are tensors in [-1, 1] inside and uint8 PNG outside. Only Pillow is used (no matplotlib), so these
helpers are cheap to import from the `rill` command.

    save_grid(images, "grid.png", nrow=4, scale=4)            # (N, C, H, W) in [-1, 1] -> one PNG
    strip = denoising_strip(model, "a red circle", nfe=12)    # x and x̂0 at every σ the sampler visits
    strip.save("strip.png", scale=4); strip.save_gif("denoise.gif", scale=4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "to_uint8",
    "make_grid",
    "to_pil",
    "save_png",
    "save_grid",
    "save_gif",
    "save_labeled_grid",
    "DenoisingStrip",
    "denoising_strip",
    "DEMO_SHAPES",
    "run_demo",
]


def to_uint8(images: Tensor) -> Tensor:
    """(N, C, H, W) or (C, H, W) float in [-1, 1] -> uint8 of the same layout (values clamped, rounded)."""
    if not images.is_floating_point():
        raise ValueError(f"expected a float image tensor in [-1, 1], got dtype {images.dtype}")
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 1, pad_value: float = 1.0) -> Tensor:
    """Tile (N, C, H, W) images into one (C, H', W') image, `nrow` images per row (default ≈ sqrt(N)).

    Images are separated by `padding` pixels of `pad_value` (in [-1, 1]; 1 = white) and framed by the same.
    """
    if images.ndim != 4:
        raise ValueError(f"make_grid expects (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image")
    nrow = max(1, min(n, nrow or math.ceil(math.sqrt(n))))
    rows = math.ceil(n / nrow)
    p = padding
    grid = images.new_full((c, rows * (h + p) + p, nrow * (w + p) + p), pad_value)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, p + r * (h + p) : p + r * (h + p) + h, p + k * (w + p) : p + k * (w + p) + w] = images[i]
    return grid


def to_pil(image: Tensor, scale: int = 1):
    """One (C, H, W) image in [-1, 1] -> a PIL image (grey for C = 1, RGB for C = 3), upscaled by `scale`
    (nearest neighbour)."""
    from PIL import Image

    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"to_pil expects one (C, H, W) image with C = 1 or 3, got shape {tuple(image.shape)}"
        )
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    arr = to_uint8(image).permute(1, 2, 0).numpy()  # (H, W, C)
    pil = Image.fromarray(arr[..., 0], mode="L") if arr.shape[-1] == 1 else Image.fromarray(arr, mode="RGB")
    if scale > 1:
        pil = pil.resize((pil.width * int(scale), pil.height * int(scale)), Image.NEAREST)
    return pil


def save_png(image: Tensor, path: str | Path, scale: int = 1) -> Path:
    """Save one (C, H, W) image in [-1, 1] as a uint8 PNG (creating the folder). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image, scale).save(path)
    return path


def save_grid(
    images: Tensor, path: str | Path, nrow: int | None = None, scale: int = 1, padding: int = 1
) -> Path:
    """Tile (N, C, H, W) images in [-1, 1] (see `make_grid`) and save as a PNG upscaled by `scale`."""
    return save_png(make_grid(images, nrow, padding), path, scale)


def save_labeled_grid(images: Tensor, path: str | Path, labels: Sequence[str], scale: int = 1) -> Path:
    """A grid with one row per label (len(images) must be a multiple of len(labels)); each row's label is
    written to its left (Pillow's default font)."""
    from PIL import Image, ImageDraw

    if len(labels) == 0 or images.shape[0] % len(labels):
        raise ValueError(f"{images.shape[0]} images do not split into {len(labels)} equal rows")
    cols = images.shape[0] // len(labels)
    grid = to_pil(make_grid(images, nrow=cols), scale).convert("RGB")
    row_h = (images.shape[-2] + 1) * scale
    measure = ImageDraw.Draw(grid)
    left = 10 + int(max(measure.textlength(t) for t in labels))
    out = Image.new("RGB", (grid.width + left, grid.height), "white")
    out.paste(grid, (left, 0))
    draw = ImageDraw.Draw(out)
    for r, text in enumerate(labels):
        draw.text((4, scale + r * row_h + row_h // 2 - 6), text, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def save_gif(
    frames: Sequence[Tensor] | Tensor,
    path: str | Path,
    scale: int = 1,
    duration_ms: int = 120,
    hold_last_ms: int = 1000,
) -> Path:
    """Save (C, H, W) frames in [-1, 1] as a looping GIF; the last frame stays up for `hold_last_ms`."""
    frames = list(frames)
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    pils = [to_pil(f, scale).convert("RGB") for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [int(duration_ms)] * (len(pils) - 1) + [int(max(duration_ms, hold_last_ms))]
    pils[0].save(path, save_all=True, append_images=pils[1:], duration=durations, loop=0, optimize=False)
    return path


# --- the denoising strip ------------------------------------------------------------------------------------
@dataclass
class DenoisingStrip:
    """What the sampler saw at each step: σ_i, the current sample x_i and the model's x̂0 = D(x_i; σ_i).

    `xs` are shown in VP scale, x / sqrt(1 + σ²), so the noisy samples stay in a viewable range; `final` is
    the sample the sampler returned (σ = 0).
    """

    sigmas: list[float]
    xs: Tensor  # (S, C, H, W) x_i / sqrt(1 + σ_i²)
    x0s: Tensor  # (S, C, H, W) x̂0 at step i
    final: Tensor  # (C, H, W)
    prompt: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def picture(self, columns: int | None = 8) -> Tensor:
        """A 2-row (C, H', W') image: top row x over σ, bottom row x̂0 over σ; `columns` evenly spaced steps
        (always the first and the last), plus a final column with the returned sample in both rows."""
        idx = _spread(len(self.sigmas), columns)
        top = torch.cat([self.xs[idx], self.final[None]])
        bottom = torch.cat([self.x0s[idx], self.final[None]])
        return make_grid(torch.cat([top, bottom]), nrow=len(idx) + 1)

    def picked_sigmas(self, columns: int | None = 8) -> list[float]:
        return [self.sigmas[i] for i in _spread(len(self.sigmas), columns)] + [0.0]

    def save(self, path: str | Path, scale: int = 4, columns: int | None = 8, labels: bool = True) -> Path:
        """Save the strip as a PNG; with `labels`, σ is written above each column (Pillow's default font)."""
        pil = to_pil(self.picture(columns), scale).convert("RGB")
        if labels:
            pil = _label_columns(pil, self.picked_sigmas(columns), self.xs.shape[-1] * scale, scale)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pil.save(path)
        return path

    def save_gif(self, path: str | Path, scale: int = 4, duration_ms: int = 150) -> Path:
        """An animation: each frame shows x (left) next to x̂0 (right) at one step, ending on the sample."""
        frames = [make_grid(torch.stack([x, x0]), nrow=2) for x, x0 in zip(self.xs, self.x0s)]
        frames.append(make_grid(torch.stack([self.final, self.final]), nrow=2))
        return save_gif(frames, path, scale=scale, duration_ms=duration_ms)


def _spread(n: int, columns: int | None) -> list[int]:
    if columns is None or columns >= n:
        return list(range(n))
    if columns < 2:
        raise ValueError(f"columns must be >= 2 (first and last step), got {columns}")
    return sorted({round(i * (n - 1) / (columns - 1)) for i in range(columns)})


def _label_columns(pil, sigmas: list[float], cell: int, scale: int):
    from PIL import Image, ImageDraw

    band = 14
    out = Image.new("RGB", (pil.width, pil.height + band), "white")
    out.paste(pil, (0, band))
    draw = ImageDraw.Draw(out)
    for k, s in enumerate(sigmas):
        x = scale + k * (cell + scale)  # padding of 1 pixel, upscaled
        draw.text((x + 1, 1), f"sigma {s:.3g}" if s else "output", fill=(0, 0, 0))  # ASCII: any font has it
    return out


def denoising_strip(
    model,
    prompt: str,
    *,
    negative: str = "",
    nfe: int = 16,
    sampler: str = "auto",
    guidance: float | None = None,
    seed: int = 0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    device: str | torch.device | None = None,
) -> DenoisingStrip:
    """Generate one image for `prompt` and record x and x̂0 at every sampler step (via the sampler callback).

    x̂0 develops coarse to fine: at large σ it is a blurry average of everything that fits the prompt, and the
    detail appears as σ falls.
    """
    from .generate import generate

    sigmas: list[float] = []
    xs: list[Tensor] = []
    x0s: list[Tensor] = []

    def record(step: int, x: Tensor, sigma: float, x0_hat: Tensor) -> None:
        sigmas.append(float(sigma))
        xs.append((x[0] / math.sqrt(1 + float(sigma) ** 2)).detach().float().cpu())
        x0s.append(x0_hat[0].detach().float().cpu())

    final = generate(
        model,
        prompt,
        negative=negative,
        n=1,
        nfe=nfe,
        sampler=sampler,
        guidance=guidance,
        seed=seed,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        callback=record,
        device=device,
    )
    if not sigmas:
        raise RuntimeError("the sampler never called back; cannot draw a denoising strip")
    meta = {"nfe": nfe, "sampler": sampler, "guidance": guidance, "seed": seed, "negative": negative}
    return DenoisingStrip(sigmas, torch.stack(xs), torch.stack(x0s), final[0].cpu(), prompt, meta)


# --- the demo -----------------------------------------------------------------------------------------------
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


def _heldout(prompt: str) -> bool:
    from .data.shapes import HELDOUT_COMBOS, parse_caption

    return any((o["colour"], o["shape"]) in HELDOUT_COMBOS for o in parse_caption(prompt))


def _encoder_key(path: Path) -> str:
    """The text-encoder spec stored in a model file's metadata, as a comparable string ("null" for none)."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
    return json.dumps(json.loads(meta.get("rill.model_config", "{}")).get("text_encoder"), sort_keys=True)


def _load_bundled(names: Sequence[str]) -> dict[str, Any]:
    """The bundled models, sharing one text encoder between those whose configs name the same one (the
    encoder is loaded once: it is the slowest part of starting up)."""
    from importlib import resources

    from .model import load_model

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
                shared.setdefault(key, models[name].text_encoder)
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
    """The `rill demo` folder: digit and shape prompt grids, a denoising strip (PNG + GIF) and an index.md.

    Column j of every grid uses seed + j (same starting noise along a column: only the prompt changes).
    models: {"digits": model, "shapes": model} to use instead of the bundled ones.
    """
    import time

    from .generate import generate

    out = Path(out)
    t0 = time.perf_counter()
    models = models or _load_bundled(["digits", "shapes"])
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
