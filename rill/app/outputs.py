"""What `rill generate` writes, and the checks before it samples: names that never collide (a readable slug +
a short hash of every setting), the settings inside every PNG (a JSON text chunk "rill" and an A1111-style
"parameters" line) read back by `rill info IMAGE.png` and `rill generate --from IMAGE.png`, grids tiled into
several files past a size, bounds and warnings for the sampling flags, vocabulary hints for the bundled
models."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from .common import UserError, slug

__all__ = ["slug", "settings_hash", "png_text", "read_settings", "GridWriter", "check_sampling", "vocabulary",
           "unknown_words", "LIMITS", "file_hash", "image_settings"]  # fmt: skip

# hard bounds (an error) and the point past which a legal value is unwise (a warning)
LIMITS = {"nfe": 1000, "n": 10_000, "guidance": (0.0, 100.0), "guidance_warn": 15.0, "second_order_steps": 10}
GRID_MAX_PX = 4096  # a grid file is at most this tall; more rows go into the next file (-grid-2.png, ...)
SCHEMA = "rill-image/1"


def settings_hash(settings: dict[str, Any]) -> str:
    """8 hex digits of SHA-256 over every setting except the seed: the images of one command share it, and two
    commands that differ in anything (the full prompt, its case, the model, ...) never do."""
    rest = {k: v for k, v in settings.items() if k != "seed"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8]


def file_hash(path: Path) -> str:
    """10 hex digits of the file's SHA-256 (the "Model hash" of A1111-style parameters)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:10]


def image_settings(
    *, prompt: str, negative: str, seed: int, sampler: str, nfe: int, guidance: float | None, sigma_min,
    sigma_max, spec: str, path: Path, model: Any, lora: list | tuple = (), device: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Everything that decides an image, as recorded in its PNG by `rill generate` and `rill serve` alike (the
    seed is set per image; `device` is the --device flag as given, "auto" when none)."""
    from .. import __version__
    from ..inference.generate import DEFAULT_GUIDANCE, sigma_range
    from .common import BUNDLED

    lo, hi = sigma_range(model, sigma_min, sigma_max)
    w = guidance if guidance is not None else model.config.guidance or DEFAULT_GUIDANCE
    return {
        "prompt": prompt, "negative": negative, "seed": seed, "sampler": sampler, "nfe": nfe,
        "guidance": float(w), "sigma_min": lo, "sigma_max": hi,
        "guidance_interval": _interval(getattr(model.config, "guidance_interval", None)),
        "model": spec if spec in BUNDLED else str(Path(path).resolve()), "model_hash": file_hash(Path(path)),
        "size": list(model.config.shape), "lora": list(lora), "device": str(device or "auto"),
        "rill": __version__,
    }  # fmt: skip


def _interval(span: Any) -> list[float] | None:
    """The model's guidance interval as recorded (a JSON list), None when guidance acts at every σ."""
    return None if span is None else [float(v) for v in span]


def png_text(settings: dict[str, Any]) -> dict[str, str]:
    """The PNG text chunks of one image: "rill" (JSON, everything `--from` needs) and "parameters" (the
    one-paragraph form A1111 / ComfyUI users read)."""
    s = settings
    line = (
        f"{s['prompt']}\nNegative prompt: {s['negative']}\nSteps: {s['nfe']}, Sampler: {s['sampler']}, "
        f"CFG scale: {s['guidance']}, Seed: {s['seed']}, Size: {s['size'][-1]}x{s['size'][-2]}, "
        f"Model: {s['model']}, Model hash: {s['model_hash']}, Version: rill {s['rill']}"
    )
    return {"rill": json.dumps({"schema": SCHEMA, **s}, ensure_ascii=False), "parameters": line}


def read_settings(path: str | Path) -> dict[str, Any]:
    """The settings a `rill generate` PNG carries (its "rill" text chunk); a UserError for any other file."""
    from ..viz.images import read_png_text

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path!r} does not exist; pass a PNG written by 'rill generate'")
    try:
        text = read_png_text(p)
    except Exception as e:  # PIL raises many types for broken files
        raise UserError(f"{path} is not a readable image ({e.__class__.__name__}: {e})") from None
    try:
        settings = json.loads(text["rill"])
    except (KeyError, json.JSONDecodeError):
        keys = f" (its text chunks: {sorted(text)})" if text else ""
        raise UserError(
            f"{path} carries no rill settings{keys}: only PNGs written by 'rill generate' can be read back"
        ) from None
    if settings.get("schema") != SCHEMA:
        raise UserError(f"{path}: unknown settings schema {settings.get('schema')!r}; expected {SCHEMA!r}")
    return settings


class GridWriter:
    """Collects images and writes them as grid PNGs of `nrow` columns, each at most GRID_MAX_PX tall; a full
    grid is written at once, so a long job's grids appear as it goes. Names: STEM-grid.png for a single file,
    else STEM-grid-1.png, STEM-grid-2.png, ..."""

    def __init__(self, stem: Path, total: int, nrow: int, image_h: int, scale: int, text: dict[str, str]):
        self.stem, self.nrow, self.scale, self.text = stem, nrow, scale, text
        rows = max(1, GRID_MAX_PX // ((image_h + 1) * scale))
        self.per_file = rows * nrow
        self.files = -(-total // self.per_file)
        self.pending: list = []
        self.written: list[Path] = []

    def add(self, images) -> None:
        self.pending.extend(images)
        while len(self.pending) >= self.per_file:
            self._write(self.per_file)

    def close(self) -> list[Path]:
        if self.pending:
            self._write(len(self.pending))
        return self.written

    def _write(self, k: int) -> None:
        import torch

        from ..viz.images import save_grid

        batch, self.pending = torch.stack(self.pending[:k]), self.pending[k:]
        index = f"-{len(self.written) + 1}" if self.files > 1 else ""
        path = self.stem.with_name(f"{self.stem.name}-grid{index}.png")
        self.written.append(save_grid(batch, path, nrow=min(self.nrow, k), scale=self.scale, text=self.text))


def warn(message: str) -> None:
    print(f"rill generate: warning: {message}", file=sys.stderr)


def check_sampling(n: int, nfe: int, guidance: float | None, sampler: str) -> None:
    """Errors for values past the bounds, warnings for legal but unwise ones (before any sampling)."""
    if nfe > LIMITS["nfe"]:
        raise UserError(
            f"--nfe {nfe} is more than {LIMITS['nfe']} denoiser calls per image; the samplers converge long "
            "before that (the bundled models are sharp at 16-40): pass --nfe 1000 or less"
        )
    if n > LIMITS["n"]:
        raise UserError(
            f"-n {n} is more than {LIMITS['n']} images in one command; split it (--seed moves on)"
        )
    lo, hi = LIMITS["guidance"]
    if guidance is not None and not lo <= guidance <= hi:
        raise UserError(
            f"--guidance {guidance} is outside [{lo:g}, {hi:g}]: 1 = no guidance, 0 = the negative prompt "
            "only, 2-5 is usual"
        )
    if guidance is not None and guidance > LIMITS["guidance_warn"]:
        warn(
            f"--guidance {guidance} is very strong: colours saturate and shapes break past "
            f"~{LIMITS['guidance_warn']:g}"
        )
    if sampler != "auto":
        from ..samplers import INFO

        order = INFO[sampler].order if sampler in INFO else 1
        steps = nfe // max(1, order)
        if order >= 2 and steps < LIMITS["second_order_steps"]:
            warn(
                f"--sampler {sampler} is second order: --nfe {nfe} is only {steps} steps, too few for it to "
                f"be accurate (colours break); use --nfe {2 * LIMITS['second_order_steps']} or more, or "
                "--sampler euler / auto"
            )


def vocabulary(dataset: str) -> set[str] | None:
    """The words of a bundled dataset's captions (digits, shapes), or None for any other dataset."""
    if dataset == "shapes":
        from ..data.shapes import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES

        parts = [*COLOURS, *SHAPES, *SIZES, *POSITIONS, *RELATIONS, "a", "in", "the", "centre", "center"]
    elif dataset == "digits":
        from ..data.digits import CAPTION_TEMPLATES, NUMBER_WORDS

        parts = (
            [t.format(n=0, w="") for t in CAPTION_TEMPLATES]
            + list(NUMBER_WORDS)
            + [str(d) for d in range(10)]
        )
    else:
        return None
    return {w for p in parts for w in re.findall(r"[a-z0-9]+", p.lower())}


def unknown_words(prompt: str, dataset: str) -> tuple[list[str], set[str]] | None:
    """(the prompt's words the model never saw in training, the words it knows), or None when all are known
    or the dataset's vocabulary is not known."""
    known = vocabulary(dataset)
    if known is None:
        return None
    words = re.findall(r"[^\W_]+", prompt.lower())
    new = [w for w in dict.fromkeys(words) if w not in known]
    return (new, known) if new else None
