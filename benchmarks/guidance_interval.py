"""Guidance everywhere vs guidance only inside a σ interval (Kynkäänniemi et al. 2024), on the validation set
of each bundled model: FD and adherence per (w, interval), and the setting rill.eval.guidance's rule picks.

    python benchmarks/guidance_interval.py --model digits            # runs the sweep (a few minutes)
    python benchmarks/guidance_interval.py --model shapes --from-eval E.json   # a `rill eval --out` file's
    python benchmarks/guidance_interval.py --model digits --test 1.5 --test 2@0-0.5   # on the test set
    python benchmarks/guidance_interval.py --table      # -> benchmarks/results/guidance_interval.md

The sweep is `rill eval MODEL --sweep W,... --sweep-intervals all,LO-HI,...`: validation prompts and seeds
(never the test set), NFE 16, sampler auto. The rule: the lowest FD among the settings whose adherence reaches
min(98%, best − 2%). A choice is shipped in the model file only where the test set (`rill eval MODEL`'s
prompts and seeds) agrees; the table names what each bundled file ships.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
SWEEPS = {  # guidances, intervals ("all" = every σ)
    "digits": ("1,1.5,2,3", "all,0-0.5,0-1,0-2,0.05-1"),
    "shapes": ("1.5,2,3", "all,0-0.5,0-1,0-2,0.2-5"),
    "emoji": ("2,3", "all,0-0.5,0-1"),
}


def run(name: str) -> dict:
    from rill.eval.cli import load_checkpoint
    from rill.eval.guidance import guidance_sweep, parse_intervals

    model = load_checkpoint(name)
    ws, ivs = SWEEPS[name]
    rows = guidance_sweep(model, name, [float(w) for w in ws.split(",")], intervals=parse_intervals(ivs))
    return {str(k): v for k, v in rows.items()}


def test(name: str, key: str) -> dict:
    """`rill eval NAME` (test prompts and seeds) at the setting `key` ("2" or "2@0-0.5")."""
    from rill.eval.cli import DEFAULT_N, load_checkpoint
    from rill.eval.guidance import parse_setting
    from rill.eval.run import evaluate_model

    w, span = parse_setting(key)
    kw = dict(n=DEFAULT_N[name], guidance=w, guidance_interval=span or (0.0, math.inf))
    r = evaluate_model(load_checkpoint(name), name, **kw)
    return {k: round(float(r[k]), 4) for k in ("fd", "adherence", "fd_real_floor") if r.get(k) is not None}


def shipped(name: str) -> str:
    from rill.model import bundled_model

    cfg = bundled_model(name).config
    span = cfg.guidance_interval
    return f"{cfg.guidance:g}" + ("" if span is None else f" for σ in [{span[0]:g}, {span[1]:g}]")


def table(sweeps: dict[str, dict]) -> str:
    from rill.eval.guidance import choose_setting, parse_setting

    about = __doc__.split("\n\n")[2].replace("\n", " ")
    lines = ["# Guidance interval: validation sweeps of the bundled models", "",
             f"Written by `python benchmarks/guidance_interval.py --table`. {about}", ""]  # fmt: skip
    for name, entry in sweeps.items():
        rows = entry["validation"]
        best = choose_setting(rows)
        everywhere = choose_setting({k: r for k, r in rows.items() if parse_setting(k)[1] is None})
        lines += [f"## {name}", "", "| w | σ interval | FD | adherence |", "|---:|---|---:|---:|"]
        for k, r in rows.items():
            w, iv = parse_setting(k)
            span = "every σ" if iv is None else f"[{iv[0]:g}, {iv[1]:g}]"
            mark = " **(chosen)**" if k == best else ""
            lines.append(f"| {w:g} | {span}{mark} | {r['fd']:.2f} | {100 * r['adherence']:.1f}% |")
        b, e = rows[best], rows[everywhere]
        lines += [
            "",
            f"Chosen: w={best} (FD {b['fd']:.2f}, adherence {100 * b['adherence']:.1f}%); the best with "
            f"guidance at every σ: w={everywhere} (FD {e['fd']:.2f}, {100 * e['adherence']:.1f}%).",
            "",
        ]
        tests = entry.get("test", {})
        if tests:
            said = "; ".join(
                f"w={k}: FD {t['fd']:.2f}, adherence {100 * t['adherence']:.1f}%" for k, t in tests.items()
            )
            lines.append(f"Test set (`rill eval {name}`'s prompts and seeds): {said}.")
        lines += [f"The bundled file ships guidance {shipped(name)}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(SWEEPS))
    ap.add_argument("--from-eval", default=None, help="take the sweep from this `rill eval --out` JSON")
    ap.add_argument(
        "--test",
        action="append",
        default=[],
        metavar="SETTING",
        help="also evaluate this setting (w or w@lo-hi) on the test set; repeatable",
    )
    ap.add_argument("--table", action="store_true", help="render every recorded sweep into the .md")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    store = RESULTS / "guidance_interval.json"
    sweeps = json.loads(store.read_text()) if store.exists() else {}
    if args.model:
        entry = sweeps.setdefault(args.model, {})
        if args.from_eval:
            entry["validation"] = json.loads(Path(args.from_eval).read_text())["guidance_sweep"]["rows"]
        elif not args.test:
            entry["validation"] = run(args.model)
        for key in args.test:
            entry.setdefault("test", {})[key] = test(args.model, key)
        store.write_text(json.dumps(sweeps, indent=1) + "\n")
    md = table(sweeps)
    (RESULTS / "guidance_interval.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
