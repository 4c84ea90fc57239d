"""rill vs diffusers over training seeds: the per-seed runs of benchmarks/train_vs_diffusers.py side by side.

    python benchmarks/train_vs_diffusers.py --minutes 10 --seed 1 \
        --out benchmarks/results/train_vs_diffusers_seed1.md
    python benchmarks/train_vs_diffusers_seeds.py      # -> benchmarks/results/train_vs_diffusers_seeds.md

Per seed: each model's FD at its best evaluated guidance (rill.eval.guidance.choose_setting, the rule the
per-seed tables use), the adherence there, and the held-out denoising error at σ = 0.5 where the run measured
it; then the mean and standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rill.eval.guidance import choose_setting  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RUNS = ["train_vs_diffusers.json", "train_vs_diffusers_seed1.json", "train_vs_diffusers_seed2.json"]
MODELS = ("rill", "diffusers")


def summarise(run: dict) -> dict:
    out = {"seed": run.get("seed", 0), "minutes": run["minutes"]}
    for m in MODELS:
        rows = {k: v[m] for k, v in run["evals"].items()}
        best = choose_setting(rows)
        held = (run.get("denoise_error") or {}).get(m, {}).get("0.5", {}).get("heldout")
        out[m] = {
            "setting": best,
            "fd": rows[best]["fd"],
            "adherence": rows[best]["adherence"],
            "heldout": held,
            "steps": run[m]["steps"],
        }
    out["floor"] = next(iter(run["evals"].values()))["rill"].get("fd_real_floor")
    return out


def render(rows: list[dict]) -> str:
    lines = [
        "# rill vs diffusers over training seeds (digits, 10 min each on 2 shared CPU cores)",
        "",
        "Written by `python benchmarks/train_vs_diffusers_seeds.py` from the per-seed JSON files of "
        "benchmarks/train_vs_diffusers.py (one run per seed, both models interleaved). FD is against "
        "the train split (lower is better); the real-vs-train floor (held-out digits vs the train split) is "
        "given per run. Held-out denoising error: per pixel at σ = 0.5 on the 359 held-out digits.",
        "",
        "| seed | rill best w | rill FD | adherence | diffusers best w | diffusers FD | adherence | FD ratio "
        "diffusers / rill | real floor | held-out error rill | diffusers |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    for r in rows:
        a, b = r["rill"], r["diffusers"]
        lines.append(
            f"| {r['seed']} | {a['setting']} | {a['fd']:.2f} | {a['adherence']:.1%} | {b['setting']} | "
            f"{b['fd']:.2f} | {b['adherence']:.1%} | {b['fd'] / a['fd']:.2f}x | {fmt(r['floor'], '.2f')} | "
            f"{fmt(a['heldout'], '.4f')} | {fmt(b['heldout'], '.4f')} |"
        )
    fa, fb = [r["rill"]["fd"] for r in rows], [r["diffusers"]["fd"] for r in rows]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    lines += [
        "",
        f"Mean over {len(rows)} seeds: rill FD {statistics.mean(fa):.2f} ± {sd(fa):.2f}, diffusers "
        f"{statistics.mean(fb):.2f} ± {sd(fb):.2f} (± one standard deviation); ratio of the means "
        f"{statistics.mean(fb) / statistics.mean(fa):.2f}x (target >= 1.5x).",
    ]
    held = [
        (r["rill"]["heldout"], r["diffusers"]["heldout"]) for r in rows if r["rill"]["heldout"] is not None
    ]
    if held:
        lines.append(
            f"Held-out denoising error at σ = 0.5, mean over the {len(held)} seeds that measured it: rill "
            f"{statistics.mean(h[0] for h in held):.4f}, diffusers {statistics.mean(h[1] for h in held):.4f}."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=RUNS, help="per-seed JSON files under benchmarks/results/")
    ap.add_argument("--out", default=str(RESULTS / "train_vs_diffusers_seeds.md"))
    args = ap.parse_args(argv)
    rows = [summarise(json.loads((RESULTS / name).read_text())) for name in args.runs]
    text = render(rows)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
