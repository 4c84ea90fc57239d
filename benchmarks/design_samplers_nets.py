"""Design the budget table of sampler "auto" on trained networks that the sampler benchmark never judges.

    python -m benchmarks.design_samplers_nets --checkpoint digits-s1=runs/design/digits-s1/model.safetensors \
        --checkpoint shapes-s1=runs/design/shapes-s1/model.safetensors [--guidance 1,3] [--nfes 8,10,12,16,25]

The design nets of session 10 (recipes/design_nets.md): a digits model and a shapes model trained with seed 1
for 6 and 14 minutes, and an early EMA checkpoint of an emoji run — never the bundled models the benchmark
judges.

For each design net, guidance w and NFE: the RMS endpoint error in pixels of each candidate (sampler,
options, grid) against the converged reference of the same guided PF-ODE (benchmarks/samplers_nets.Case:
DPM-Solver++(3M), 200 calls, Karras, σ 80 → 0.002), on DESIGN_PROMPTS × DESIGN_SEEDS — other prompts and
seeds than the benchmark's TEST_*. Per (w, NFE) the pick is the candidate with the smallest worst-case ratio
to the best candidate over the design nets. The bundled models (benchmarks/samplers_nets.py) then judge the
table as held-out nets. Prints a table and writes benchmarks/results/design_samplers_nets.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks._models import add_checkpoint_flag, checkpoint_paths
from benchmarks.samplers_nets import Case, load_models, rms, run_rill

OUT = Path(__file__).resolve().parent / "results" / "design_samplers_nets.md"
DESIGN_PROMPTS = {
    "digits": [f"the number {w}" for w in ("zero", "three", "five", "eight")],
    "shapes": [
        "a small red triangle in the center",
        "a large green square to the left of a small blue circle",
    ],
    "emoji": [
        "an emoji of dog face",
        "an emoji of red heart",
        "an emoji of pizza",
        "an emoji of person raising hand, medium skin tone",
        "an emoji of sun",
        "an emoji of grinning face",
    ],
}
DESIGN_SEEDS = range(2000, 2002)
# (label, sampler, options, grid): auto's rows (they differ with guidance) on the rill-nets grid blended with
# the Karras grid by a share s (rill.core.designed_grid.NET_KARRAS_SHARE; s = 1 is the Karras grid), and the
# Karras solvers a user would otherwise pick
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
CANDIDATES = {
    "auto (the shipped table)": ("auto", {}, None),
    **{f"UniPC-3 bh1, Karras share {s:g}": ("unipc", {"order": 3, "variant": "bh1"}, ("rill-nets", s))
       for s in SHARES},
    **{f"UniPC-2 bh2, Karras share {s:g}": ("unipc", {"order": 2, "variant": "bh2"}, ("rill-nets", s))
       for s in SHARES},
    "DPM++ 2M Karras": ("dpmpp_2m", {}, "karras"),
    "UniPC-3 Karras": ("unipc", {"order": 3}, "karras"),
}  # fmt: skip


def grid_for(grid, sampler: str, options: dict, nfe: int):
    """A grid name (or None) as is; ("rill-nets", share) as the σ tensor of the steps that fit nfe (σ 80 →
    0.002; the rows of rill.core.designed_grid.NET_ROWS)."""
    if grid is None or isinstance(grid, str):
        return grid
    from rill.core.grids import make_grid
    from rill.samplers.budget import steps_for

    name, share = grid
    return make_grid(name, steps_for(sampler, nfe, options), 0.002, 80.0, karras_share=share)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guidance", default="1,3")
    ap.add_argument("--nfes", default="8,10,12,16,20,25")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    add_checkpoint_flag(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = checkpoint_paths(args)
    if not paths:
        raise SystemExit(
            "name the design nets with --checkpoint NAME=PATH (never the benchmark's bundled models)"
        )
    nfes = [int(v) for v in args.nfes.split(",")]
    t0 = time.perf_counter()
    models = load_models(list(paths), paths)
    err: dict[tuple[float, int, str, str], float] = {}  # (w, nfe, net, candidate) -> px
    for name, model in models.items():
        dataset = str(model.config.dataset or name).split(":")[0]
        for w in [float(v) for v in args.guidance.split(",")]:
            case = Case(model, dataset, w, DESIGN_PROMPTS[dataset], DESIGN_SEEDS)
            ref = case.reference(80.0)
            for label, (sampler, options, grid) in CANDIDATES.items():
                for nfe in nfes:
                    x = run_rill(case, sampler, options, grid_for(grid, sampler, options, nfe), nfe)
                    err[w, nfe, name, label] = rms(x, ref)
                row = " ".join(f"{err[w, n, name, label]:.4f}" for n in nfes)
                print(f"{name} w={w:g} {label}: {row}", flush=True)
    flags = " ".join(f"--checkpoint {k}={v}" for k, v in paths.items())
    lines = [
        "# Designing auto's budget table on trained nets",
        "",
        f"`python -m benchmarks.design_samplers_nets {flags}"
        f" --guidance {args.guidance} --nfes {args.nfes}` ({args.threads} thread(s), "
        f"{time.perf_counter() - t0:.0f} s).",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
    ]
    for w in sorted({k[0] for k in err}):
        lines += [f"## guidance {w:g}: RMS endpoint error in pixels (per net), and the pick", "",
                  "| candidate | net | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                  "|---|---|" + "---:|" * len(nfes)]  # fmt: skip
        for label in CANDIDATES:
            for name in models:
                lines.append(
                    f"| {label} | {name} | "
                    + " | ".join(f"{err[w, n, name, label]:.4f}" for n in nfes)
                    + " |"
                )
        picks = []
        for n in nfes:
            worst = {
                label: max(err[w, n, m, label] / min(err[w, n, m, c] for c in CANDIDATES) for m in models)
                for label in CANDIDATES
            }
            best = min(worst, key=worst.get)
            picks.append(f"NFE {n}: **{best}** (worst-case ×{worst[best]:.2f} of the best)")
        lines += ["", "Pick per budget: " + "; ".join(picks) + ".", ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
