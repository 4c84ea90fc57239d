"""The default guidance of a model, chosen by a sweep on a validation set, and the copy of a model file that
records it.

    rows = guidance_sweep(model, "digits", (1, 1.5, 2, 3))     # {w: {"fd", "adherence", ...}} on validation
    w = choose_guidance(rows)                                  # the rule below
    write_default_guidance("digits.safetensors", "out.safetensors", w, rows)   # never over an existing file

The rule, in one line: the lowest validation FD among the guidances whose prompt adherence reaches
min(0.98, best adherence of the sweep − 0.02). The validation set is never the test set: other prompts (a
different caption template, or other drawn captions) and other seeds than `rill eval`'s defaults.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..model.config import check_guidance_interval

__all__ = ["ADHERENCE_FLOOR", "VALIDATION_SEED", "validation_prompts", "choose_guidance", "choose_setting",
           "setting_key", "parse_setting", "parse_intervals", "guidance_sweep", "write_default_guidance",
           "stored_sweep"]  # fmt: skip

ADHERENCE_FLOOR = 0.98  # prompted content must be right this often (or within 0.02 of the sweep's best)
VALIDATION_SEED = 10_000  # first image seed of the validation set (rill eval's test set starts at 0)
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def validation_prompts(dataset: str) -> list[str]:
    """digits: "the number <word>" (the test prompts are "a handwritten digit <k>"). shapes: 24 captions of
    training compositions + 12 naming held-out pairs, drawn with another seed than the test prompts'. emoji:
    the test's prompts (its 100 seen subjects, the held-out pairs: what is measured), on other seeds."""
    if dataset == "digits":
        return [f"the number {w}" for w in _NUMBER_WORDS]
    if dataset == "shapes":
        from rill.data import load_dataset

        out: list[str] = []
        for split, count in (("train", 24), ("heldout", 12)):
            ds = load_dataset("shapes", split=split, n=400, seed=202)
            out += list(dict.fromkeys(ds.caption(i) for i in range(len(ds))))[:count]
        return out
    if dataset == "emoji":  # the test's prompt set (seen subjects, held-out pairs), drawn on other seeds
        from .emoji_eval import sweep_prompts

        return sweep_prompts()
    raise ValueError(f"no validation prompts for dataset {dataset!r} (supported: digits, shapes, emoji)")


def setting_key(guidance: float, interval: tuple[float, float] | None = None) -> float | str:
    """A sweep row's key: the guidance w (a float), or "w@lo-hi" when guidance acts only for σ in [lo, hi]."""
    return float(guidance) if interval is None else f"{float(guidance):g}@{interval[0]:g}-{interval[1]:g}"


def parse_setting(key: Any) -> tuple[float, tuple[float, float] | None]:
    """(w, interval or None) of a sweep key: 1.5, "1.5" or "1.5@0-1" (JSON gives the keys back as strings)."""
    w, _, span = str(key).partition("@")
    if not span:
        return float(w), None
    lo, _, hi = span.partition("-")
    return float(w), check_guidance_interval((lo, hi), f"sweep setting {key!r}")


def parse_intervals(text: str) -> list[tuple[float, float] | None]:
    """'all,0-1,0.1-2' -> [None, (0, 1), (0.1, 2)] ("all": guidance at every σ), for --sweep-intervals."""
    out: list[tuple[float, float] | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        out.append(None if part == "all" else parse_setting(f"1@{part}")[1])
    return out


def choose_setting(rows: dict[Any, dict[str, float]], floor: float = ADHERENCE_FLOOR) -> Any:
    """The key of the lowest-FD row among those whose adherence >= min(floor, best adherence − 0.02); ties go
    to the smaller guidance. rows: {setting_key: {"fd": ..., "adherence": ...}} (JSON strings accepted)."""
    if not rows:
        raise ValueError("choose_guidance: the sweep is empty; evaluate at least one guidance")
    need = min(floor, max(r["adherence"] for r in rows.values()) - 0.02)
    ok = [k for k, r in rows.items() if r["adherence"] >= need - 1e-12]
    return min(ok, key=lambda k: (rows[k]["fd"], parse_setting(k)[0]))


def choose_guidance(rows: dict[Any, dict[str, float]], floor: float = ADHERENCE_FLOOR) -> float:
    """The guidance w of choose_setting(rows) (the rule in the module docstring)."""
    return parse_setting(choose_setting(rows, floor))[0]


def guidance_sweep(
    model: Any,
    dataset: str,
    guidances: tuple[float, ...] | list[float],
    *,
    intervals: list[tuple[float, float] | None] | None = None,
    prompts: list[str] | None = None,
    n: int | None = None,
    nfe: int = 16,
    sampler: str = "auto",
    seed: int = VALIDATION_SEED,
    log: bool = True,
) -> dict[Any, dict[str, float]]:
    """evaluate_model at each guidance (× each σ interval of `intervals`; None in it = every σ) on the
    validation set (default prompts: validation_prompts(dataset); n: 30 images per prompt for digits, 8 for
    shapes, 2 for emoji). Returns {setting_key(w, interval): fd, adherence, ...}; w = 1 is run once."""
    from .run import evaluate_model

    settings = list(dict.fromkeys(
        (float(w), None if float(w) == 1.0 else iv) for iv in (intervals or [None]) for w in guidances
    ))  # fmt: skip
    rows: dict[Any, dict[str, float]] = {}
    emoji = dataset == "emoji"  # its own prompts and judges (emoji_eval.py); adherence = subject recognised
    if emoji and prompts is not None:
        raise ValueError("the emoji sweep uses the emoji evaluation's own prompts; drop prompts=")
    if not emoji:
        prompts = list(prompts) if prompts is not None else validation_prompts(dataset)
    n = n or {"digits": 30, "emoji": 2}.get(dataset, 8)
    keys = ("fd", "adherence", "adherence_heldout", "background_std") if emoji else (
        "fd", "adherence", "precision", "recall")  # fmt: skip
    for w, iv in settings:
        span = iv or (0.0, math.inf)  # a row without an interval: every σ, whatever the model's default
        kw = dict(n=n, nfe=nfe, sampler=sampler, guidance=w, guidance_interval=span, seed=seed)
        r = evaluate_model(model, dataset, **kw, log=False) if emoji else evaluate_model(
            model, dataset, prompts, **kw, log=False)  # fmt: skip
        key = setting_key(w, iv)
        rows[key] = {k: round(float(r[k]), 4) for k in keys}
        if log:
            more = f", held-out attribute {100 * r['adherence_heldout']:.1f}%" if emoji else ""
            print(f"rill eval: sweep w={key}: FD {r['fd']:.3f}, adherence {100 * r['adherence']:.1f}%{more}",
                  flush=True)  # fmt: skip
    return rows


def stored_sweep(model: Any) -> dict[str, Any] | None:
    """The sweep a model file records (rill.info["guidance_sweep"], written by write_default_guidance)."""
    return (getattr(model, "info", None) or {}).get("guidance_sweep")


def write_default_guidance(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    guidance: float,
    rows: dict | None = None,
    interval: tuple[float, float] | None = None,
    **facts: Any,
) -> Path:
    """A copy of the model file `src` at `dst` whose config.guidance is `guidance` (and whose
    config.guidance_interval is `interval`; None = guidance at every σ), recording the sweep
    (`rows`, the rule, `facts` such as prompts / seed / nfe) in rill.info["guidance_sweep"]. The weights, the
    other metadata and the tensor groups are copied unchanged. `dst` must not exist (nothing is overwritten;
    to replace a file, write the copy elsewhere and move it deliberately)."""
    from ..model.files import load_model, save_model

    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(
            f"{dst} exists; write_default_guidance never overwrites a file: pass a new path and move it "
            "over the old one yourself if that is what you want"
        )
    model = load_model(src)
    old, old_interval = model.config.guidance, model.config.guidance_interval
    model.config.guidance = float(guidance)
    model.config.guidance_interval = None if interval is None else check_guidance_interval(interval)
    info = dict(model.info or {})
    info["guidance_sweep"] = {
        "chosen": float(guidance),
        "previous_default": old,
        **({"interval": list(model.config.guidance_interval)} if interval is not None else {}),
        **({"previous_interval": list(old_interval)} if old_interval is not None else {}),
        "rule": f"lowest validation FD among guidances with adherence >= min({ADHERENCE_FLOOR}, best - 0.02)",
        "rows": {str(setting_key(*parse_setting(k))): r for k, r in (rows or {}).items()},
        **facts,
    }
    return save_model(model, dst, metadata=info)
