"""`rill eval` / `python -m rill.eval`: Fréchet distance, precision / recall, diversity, prompt adherence,
likelihood.

    rill eval digits                           # bundled model, default prompts, table + rill-eval.json
    rill eval runs/shapes/model.safetensors --prompts my_prompts.txt -n 16 --nfe 32 --nll 64
    rill eval runs/emoji/model.safetensors     # subjects recognised, held-out tones / colours, FD vs targets

The pieces live next to this file (metrics.py, features.py, adherence.py, shapes_check.py, emoji_eval.py,
likelihood.py, run.py); docs/quality.md is written by benchmarks/quality_report.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from .run import check_prompts, evaluate_model, format_table, read_prompt_file, to_jsonable

__all__ = ["main_eval", "main", "build_parser", "load_checkpoint"]

DATASETS = ("digits", "shapes", "emoji")
DEFAULT_N = {"digits": 50, "shapes": 16, "emoji": 2}  # images per prompt


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {v}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rill eval",
        description="Evaluate a model: FD, precision/recall, diversity, "
        "prompt adherence, saturation, optional NLL. Prints a table, writes JSON.",
    )
    p.add_argument("checkpoint", help="a .safetensors checkpoint, or a bundled model: digits | shapes")
    p.add_argument(
        "--data",
        choices=DATASETS,
        default=None,
        help="which dataset the model draws (default: the one recorded in the checkpoint)",
    )
    p.add_argument(
        "--prompts",
        default=None,
        help="prompt file: JSON list of strings, or text, one per line "
        "(default: the dataset's prompt set; shapes prompts must follow the caption templates)",
    )
    p.add_argument(
        "-n",
        type=_positive("-n"),
        default=None,
        help="images per prompt (default: DEFAULT_N, 50 digits, 16 shapes, 2 emoji)",
    )
    p.add_argument(
        "--nfe", type=_positive("--nfe"), default=16, help="denoiser evaluations per image (default 16)"
    )
    p.add_argument("--sampler", default="auto", help="sampler name or 'auto' (default)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image of each prompt (default 0)")
    p.add_argument(
        "--features",
        default="classifier",
        help="'classifier' (rill's CNN trained on the real data, default) or 'hf:PATH' (local CLIP / "
        "DINOv2 folder)",
    )
    p.add_argument(
        "--clip", default=None, metavar="PATH", help="local CLIP folder: also report the CLIP score"
    )
    p.add_argument(
        "--nll",
        type=int,
        default=0,
        metavar="N",
        help="also estimate NLL (bits/dim) on N held-out real images (slow: ~100+ NFE with gradients)",
    )
    p.add_argument("--out", default="rill-eval.json", help="JSON results file (default ./rill-eval.json)")
    p.add_argument(
        "--cache",
        default=None,
        help="folder for the feature nets rill trains once per dataset (safetensors + JSON; default "
        "$RILL_CACHE/eval or ~/.cache/rill/eval; point it next to a checkpoint to keep them together)",
    )
    p.add_argument("--batch-size", type=_positive("--batch-size"), default=128, help="sampling batch size")
    p.add_argument(
        "--sweep",
        default=None,
        metavar="W1,W2,...",
        help="also sweep these guidance scales on the validation set (other prompts and seeds than the test "
        "set) and print the one the rule picks (lowest FD with adherence >= min(98%%, best - 2%%)) next to "
        "the model's default",
    )
    p.add_argument(
        "--sweep-intervals",
        default=None,
        metavar="all,LO-HI,...",
        help="with --sweep: also try each guidance only for σ in [LO, HI] (Kynkäänniemi et al. 2024); 'all' "
        "is guidance at every σ, e.g. all,0-1,0.1-2",
    )
    p.add_argument(
        "--guidance-interval",
        default=None,
        metavar="LO-HI",
        help="guidance only for σ in [LO, HI] in the test evaluation (default: the model's; 'all' = every σ)",
    )
    p.add_argument(
        "--write-default",
        default=None,
        metavar="OUT",
        help="with --sweep: write a copy of the model file to OUT (a new file) with the chosen guidance as "
        "its default and the sweep recorded",
    )
    return p


def _setting_text(w: float, interval: Any) -> str:
    return f"{w:g}" + (f" for σ in [{interval[0]:g}, {interval[1]:g}]" if interval is not None else "")


def _guidance_line(model: Any, rows: dict | None) -> str:
    """The model's default guidance next to the sweep's best (run now, else the one the file records)."""
    from .guidance import choose_setting, parse_setting, stored_sweep

    default = _setting_text(model.config.guidance, model.config.guidance_interval)
    where = "this sweep (validation set)"
    if rows is None:
        stored = stored_sweep(model)
        if not stored or not stored.get("rows"):
            return f"guidance: default {default} (the file records no sweep; try --sweep 1,1.5,2,3)"
        rows, where = stored["rows"], "the sweep recorded in the file (validation set)"
    best = choose_setting(rows)
    r = rows[best]
    table = ", ".join(f"w={k}: FD {v['fd']:.2f} / {100 * v['adherence']:.1f}%" for k, v in rows.items())
    return (
        f"guidance: default {default}; best of {where}: {_setting_text(*parse_setting(best))} (FD "
        f"{r['fd']:.2f}, adherence {100 * r['adherence']:.1f}%) [{table}]"
    )


def _dataset_of(model: Any, override: str | None, source: str) -> str:
    if override:
        return override
    recorded = str(getattr(model.config, "dataset", "") or "")
    name = recorded.split(":")[0]
    if name in DATASETS:
        return name
    raise ValueError(
        f"{source}: the checkpoint records dataset {recorded!r}; rill eval knows {DATASETS}. "
        "Pass --data digits|shapes|emoji if the model draws one of them"
    )


def load_checkpoint(spec: str) -> Any:
    """A bundled model ('digits', 'shapes') or a .safetensors checkpoint; errors name the file and the problem
    (e.g. load_model's "the tensors do not match the model config stored in the file")."""
    from ..model.files import bundled_model, load_model

    if spec in DATASETS and not Path(spec).exists():
        return bundled_model(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {spec!r} does not exist; pass a .safetensors file written by "
            f"'rill train' or a bundled model: {', '.join(DATASETS)}"
        )
    try:
        return load_model(path)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        msg = str(e) if str(path) in str(e) or path.name in str(e) else f"{path}: {e}"
        raise ValueError(f"could not load checkpoint: {msg}") from e


def _model_path(spec: str) -> Path:
    """The file behind a bundled name or a path."""
    if spec in DATASETS and not Path(spec).exists():
        from ..model.files import bundled_file

        return bundled_file(spec)
    return Path(spec).expanduser()


def main_eval(argv: list[str] | argparse.Namespace | None = None) -> int:
    """`rill eval CKPT [options]`: takes an argv list or rill.cli's Namespace (checkpoint, eval_args)."""
    if isinstance(argv, argparse.Namespace):
        argv = [argv.checkpoint, *getattr(argv, "eval_args", [])]
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    model = load_checkpoint(
        args.checkpoint
    )  # bundled name or path; a file that does not match its config raises here
    dataset = _dataset_of(model, args.data, args.checkpoint)
    prompts = read_prompt_file(args.prompts) if args.prompts else None
    if prompts is not None and dataset == "shapes":
        check_prompts(dataset, prompts, args.prompts)
    n = args.n or DEFAULT_N[dataset]
    interval = None
    if args.guidance_interval:
        from .guidance import parse_intervals

        (interval,) = parse_intervals(args.guidance_interval) or [None]
        interval = interval or (0.0, math.inf)  # 'all': every σ, whatever the model's default
    if args.sweep_intervals and not args.sweep:
        raise ValueError("--sweep-intervals needs --sweep W1,W2,... (the guidances to try in each interval)")
    result = evaluate_model(
        model,
        dataset,
        prompts,
        n=n,
        nfe=args.nfe,
        sampler=args.sampler,
        guidance=args.guidance,
        guidance_interval=interval,
        seed=args.seed,
        features=args.features,
        cache=args.cache,
        nll=args.nll,
        clip=args.clip,
        batch_size=args.batch_size,
    )
    rows = None
    if args.sweep:
        from .guidance import (
            VALIDATION_SEED,
            choose_setting,
            guidance_sweep,
            parse_intervals,
            validation_prompts,
        )

        ws = [float(w) for w in args.sweep.split(",") if w.strip()]
        intervals = parse_intervals(args.sweep_intervals) if args.sweep_intervals else None
        rows = guidance_sweep(model, dataset, ws, intervals=intervals, nfe=args.nfe, sampler=args.sampler)
        result["guidance_sweep"] = {
            "rows": {str(w): r for w, r in rows.items()},
            "chosen": choose_setting(rows),
            "seed": VALIDATION_SEED,
            "prompts": validation_prompts(dataset),
        }
    elif args.write_default:
        raise ValueError("--write-default needs --sweep W1,W2,... (the guidances to choose from)")
    result = {"checkpoint": args.checkpoint, **result}
    print(format_table(result))
    print(_guidance_line(model, rows))
    if args.write_default:
        from .guidance import write_default_guidance

        sweep = result["guidance_sweep"]
        src = _model_path(args.checkpoint)
        facts = dict(seed=sweep["seed"], prompts=sweep["prompts"], nfe=args.nfe, sampler=args.sampler)
        from .guidance import parse_setting

        w, span = parse_setting(sweep["chosen"])
        dst = write_default_guidance(src, args.write_default, w, rows, span, **facts)
        print(f"wrote {dst} (default guidance {_setting_text(w, span)}; {src} is unchanged)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """python -m rill.eval CKPT [options]"""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return main_eval(argv)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        if os.environ.get("RILL_DEBUG"):
            raise
        print(f"rill eval: error: {e}", file=sys.stderr)
        return 2
