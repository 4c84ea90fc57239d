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

import os
from pathlib import Path
from typing import Any

__all__ = ["ADHERENCE_FLOOR", "VALIDATION_SEED", "validation_prompts", "choose_guidance", "guidance_sweep",
           "write_default_guidance", "stored_sweep"]  # fmt: skip

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


def choose_guidance(rows: dict[Any, dict[str, float]], floor: float = ADHERENCE_FLOOR) -> float:
    """The lowest-FD guidance among those whose adherence >= min(floor, best adherence − 0.02).
    rows: {guidance: {"fd": ..., "adherence": ...}} (keys may be strings, as read back from JSON)."""
    if not rows:
        raise ValueError("choose_guidance: the sweep is empty; evaluate at least one guidance")
    table = {float(w): r for w, r in rows.items()}
    need = min(floor, max(r["adherence"] for r in table.values()) - 0.02)
    ok = [w for w, r in table.items() if r["adherence"] >= need - 1e-12]
    return min(ok, key=lambda w: (table[w]["fd"], w))


def guidance_sweep(
    model: Any,
    dataset: str,
    guidances: tuple[float, ...] | list[float],
    *,
    prompts: list[str] | None = None,
    n: int | None = None,
    nfe: int = 16,
    sampler: str = "auto",
    seed: int = VALIDATION_SEED,
    log: bool = True,
) -> dict[float, dict[str, float]]:
    """evaluate_model at each guidance on the validation set (default prompts: validation_prompts(dataset);
    n: 30 images per prompt for digits, 8 for shapes). Returns {w: fd, adherence, precision, recall}."""
    from .run import evaluate_model

    rows: dict[float, dict[str, float]] = {}
    if dataset == "emoji":  # its own prompts and judges (emoji_eval.py); adherence = subject recognised
        from .emoji_eval import evaluate_emoji

        if prompts is not None:
            raise ValueError("the emoji sweep uses the emoji evaluation's own prompts; drop prompts=")
        for w in guidances:
            r = evaluate_emoji(model, n=n or 2, nfe=nfe, sampler=sampler, guidance=w, seed=seed, log=False)
            keys = ("fd", "adherence", "adherence_heldout", "background_std")
            rows[float(w)] = {k: round(float(r[k]), 4) for k in keys}
            if log:
                subject, held = 100 * r["adherence"], 100 * r["adherence_heldout"]
                print(f"rill eval: sweep w={w:g}: FD {r['fd']:.3f}, subject recognised {subject:.1f}%, "
                      f"held-out attribute {held:.1f}%", flush=True)  # fmt: skip
        return rows
    prompts = list(prompts) if prompts is not None else validation_prompts(dataset)
    n = n or (30 if dataset == "digits" else 8)
    for w in guidances:
        r = evaluate_model(
            model, dataset, prompts, n=n, nfe=nfe, sampler=sampler, guidance=float(w), seed=seed, log=False
        )
        rows[float(w)] = {k: round(float(r[k]), 4) for k in ("fd", "adherence", "precision", "recall")}
        if log:
            fd, adh = r["fd"], 100 * r["adherence"]
            print(f"rill eval: sweep w={w:g}: FD {fd:.3f}, adherence {adh:.1f}%", flush=True)
    return rows


def stored_sweep(model: Any) -> dict[str, Any] | None:
    """The sweep a model file records (rill.info["guidance_sweep"], written by write_default_guidance)."""
    return (getattr(model, "info", None) or {}).get("guidance_sweep")


def write_default_guidance(
    src: str | os.PathLike, dst: str | os.PathLike, guidance: float, rows: dict | None = None, **facts: Any
) -> Path:
    """A copy of the model file `src` at `dst` whose config.guidance is `guidance`, recording the sweep
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
    old = model.config.guidance
    model.config.guidance = float(guidance)
    info = dict(model.info or {})
    info["guidance_sweep"] = {
        "chosen": float(guidance),
        "previous_default": old,
        "rule": f"lowest validation FD among guidances with adherence >= min({ADHERENCE_FLOOR}, best - 0.02)",
        "rows": {str(float(w)): r for w, r in (rows or {}).items()},
        **facts,
    }
    return save_model(model, dst, metadata=info)
