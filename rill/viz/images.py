"""Image I/O: tensors in [-1, 1] inside, uint8 PNG / GIF outside. Only Pillow is used (no matplotlib), so
these helpers are cheap to import from the `rill` command.

    save_grid(images, "grid.png", nrow=4, scale=4)            # (N, C, H, W) in [-1, 1] -> one PNG
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "to_uint8",
    "make_grid",
    "to_pil",
    "save_png",
    "read_png_text",
    "save_grid",
    "save_gif",
    "save_labeled_grid",
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


def save_png(image: Tensor, path: str | Path, scale: int = 1, text: dict[str, str] | None = None) -> Path:
    """Save one (C, H, W) image in [-1, 1] as a uint8 PNG (creating the folder). Returns the path.

    text: PNG text chunks (iTXt, UTF-8), e.g. {"parameters": ...} as A1111 writes them; `read_png_text`
    reads them back. The file is written under a temporary name and renamed, so it is never half-written."""
    return _save_pil(to_pil(image, scale), Path(path), text)


def _save_pil(pil, path: Path, text: dict[str, str] | None = None) -> Path:
    from PIL import PngImagePlugin

    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pil.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_png_text(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG (tEXt, zTXt, iTXt) as a dict; {} when it has none."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # text chunks after the image data are read only once the image is loaded
        return {str(k): str(v) for k, v in (getattr(im, "text", None) or {}).items()}


def save_grid(
    images: Tensor,
    path: str | Path,
    nrow: int | None = None,
    scale: int = 1,
    padding: int = 1,
    text: dict[str, str] | None = None,
) -> Path:
    """Tile (N, C, H, W) images in [-1, 1] (see `make_grid`) and save as a PNG upscaled by `scale`."""
    return save_png(make_grid(images, nrow, padding), path, scale, text)


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
    return _save_pil(out, Path(path))


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
