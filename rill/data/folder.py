"""A folder of images with captions: `folder:PATH`.

Captions come from `metadata.jsonl` in the folder (Hugging Face imagefolder convention: one JSON object per
line with "file_name", a path relative to the folder, and "text"; "caption" is accepted too) or, for images
it does not list, from a sidecar text file next to the image (`cat.png` -> `cat.txt`). Every image found
under the folder (recursively) needs a caption.

Every file is verified when the dataset is built (fully decoded once), before its caption is looked up:
empty (0-byte), unreadable, truncated and decompression-bomb images (more than `max_pixels` pixels) are
skipped with a warning naming the file and counted in `dataset.skipped` (`dataset.skipped_files` holds
(path, reason)). Images become RGB (transparency composited on white) or, with `channels=1`, grey (PIL's
"L": the ITU-R 601 luma of that RGB; a grey file keeps its values exactly), are resized (bicubic) so the
shorter side is `image_size`, then centre-cropped to image_size × image_size, optionally flipped. A pixel v in
0..255 becomes v / 127.5 − 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["FolderDataset", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000: far above any training image, far below a decompression bomb
CHANNELS = {1: "L", 3: "RGB"}  # channels of a sample -> the PIL mode an image is converted to


@contextlib.contextmanager
def _pil_guard(max_pixels: int) -> Iterator[Any]:
    """PIL with a pixel limit whose bomb *warning* is an error too; restores PIL's global limit afterwards."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield Image
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _read_metadata(root: Path) -> dict[str, str]:
    path = root / "metadata.jsonl"
    if not path.is_file():
        return {}
    captions: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {lineno}: not valid JSON ({e.msg})") from e
        if not isinstance(row, dict) or "file_name" not in row:
            raise ValueError(
                f"{path} line {lineno}: expected an object with 'file_name' and 'text', got {line!r}"
            )
        text = row.get("text", row.get("caption"))
        if not isinstance(text, str):
            raise ValueError(
                f"{path} line {lineno}: 'text' must be a string, got {text!r} for {row['file_name']!r}"
            )
        captions[Path(row["file_name"]).as_posix()] = text
    return captions


class FolderDataset(Dataset):
    """(image (C, S, S) float in [-1, 1], caption) from a folder; S = image_size, C = channels (3 = RGB,
    1 = grey). See the module docstring."""

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int = 64,
        channels: int = 3,
        flip: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        generator: torch.Generator | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"folder dataset: {str(self.root)!r} is not a directory")
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"folder dataset: image_size must be a positive int, got {image_size!r}")
        if channels not in CHANNELS:
            raise ValueError(f"folder dataset: channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        self.image_size, self.flip, self.max_pixels, self.generator = image_size, flip, max_pixels, generator
        self.channels = channels
        self.image_shape = (channels, image_size, image_size)
        metadata = _read_metadata(self.root)
        found = sorted(
            p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        self.files: list[Path] = []
        self.captions: list[str] = []
        self.skipped_files: list[tuple[Path, str]] = []
        on_disk = {p.relative_to(self.root).as_posix() for p in found}
        for name in metadata:
            if name not in on_disk:
                self._skip(self.root / name, "listed in metadata.jsonl but not found")
        for path in found:
            reason = self._verify(path)  # first: a broken file is skipped whether or not it has a caption
            if reason is not None:
                self._skip(path, reason)
                continue
            caption = self._caption(path, metadata)
            self.files.append(path)
            self.captions.append(caption)
        if not self.files:
            what = (
                f"all {len(self.skipped_files)} images were skipped"
                if self.skipped_files
                else "no images found"
            )
            raise ValueError(
                f"folder dataset {str(self.root)!r} is empty ({what}): expected image files "
                f"({', '.join(IMAGE_EXTENSIONS)}) with captions in metadata.jsonl ('file_name', 'text') "
                "or in a .txt file next to each image"
            )

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)

    def _skip(self, path: Path, reason: str) -> None:
        warnings.warn(f"folder dataset: skipping {path}: {reason}", stacklevel=3)
        self.skipped_files.append((path, reason))

    def _caption(self, path: Path, metadata: dict[str, str]) -> str:
        rel = path.relative_to(self.root).as_posix()
        if rel in metadata:
            return metadata[rel]
        sidecar = path.with_suffix(".txt")
        if sidecar.is_file():
            return sidecar.read_text(encoding="utf-8").strip()
        raise ValueError(
            f"folder dataset: image {str(path)!r} has no caption: add a line "
            f'{{"file_name": "{rel}", "text": "..."}} to {self.root / "metadata.jsonl"} or write {sidecar}'
        )

    def _verify(self, path: Path) -> str | None:
        """None if the image decodes completely within the pixel limit, else the reason it does not."""
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with _pil_guard(self.max_pixels) as Image:
            try:
                with Image.open(path) as img:
                    img.verify()  # structure / checksums
                with Image.open(path) as img:
                    img.load()  # full decode: catches truncation
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                return f"decompression bomb ({e})"
            except Exception as e:  # PIL raises many types for broken files
                return f"unreadable image ({type(e).__name__}: {e})"
        return None

    def _load(self, path: Path) -> Any:
        with _pil_guard(self.max_pixels) as Image:
            try:
                with Image.open(path) as img:
                    img.draft("RGB", (self.image_size, self.image_size))  # JPEG: decode at reduced scale
                    img = img.convert("RGBA") if img.mode in ("RGBA", "LA", "P", "PA") else img.convert("RGB")
            except Exception as e:
                raise OSError(
                    f"folder dataset: cannot read {path} (it was readable at construction): {e}"
                ) from e
            if img.mode == "RGBA":
                white = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, img).convert("RGB")
            img = img.convert(CHANNELS[self.channels])  # "L": luma, a grey R = G = B = v stays v
            s = self.image_size
            w, h = img.size
            scale = s / min(w, h)
            size = (max(s, round(w * scale)), max(s, round(h * scale)))
            img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
            left, top = (size[0] - s) // 2, (size[1] - s) // 2
            return img.crop((left, top, left + s, top + s))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        img = self._load(self.files[i])
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(
            self.image_size, self.image_size, self.channels
        )
        x = x.permute(2, 0, 1).float() / 127.5 - 1.0  # (C, S, S)
        if self.flip and torch.rand((), generator=self.generator) < 0.5:
            x = x.flip(-1)
        return x, self.captions[i]

    def __repr__(self) -> str:
        root, n, c = str(self.root), len(self), self.channels
        return f"FolderDataset({root!r}, n={n}, channels={c}, skipped={self.skipped})"
