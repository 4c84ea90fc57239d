"""Quality sweeps on the bundled models: FD vs NFE for each deterministic sampler, and FD / adherence /
saturation vs classifier-free guidance scale (where oversaturation begins).

    python benchmarks/eval_sweeps.py                # both models -> benchmarks/results/eval_sweeps.*
    python benchmarks/eval_sweeps.py --write-docs   # ... and regenerate docs/quality.md
    python benchmarks/eval_sweeps.py --models digits --nfes 4,8,16 --n 10    # quicker

FD values are comparable only within one table (same N images, same prompts, same features): FD is biased
upward at small N. "Oversaturation onset" = the smallest guidance scale whose mean saturation exceeds the real
images' by more than 10% (relative) or whose clipped-pixel fraction exceeds the real images' by more than 2
percentage points.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks._models import add_checkpoint_flag, checkpoint_paths

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

DEFAULT_N = {"digits": 20, "shapes": 4}


def deterministic_samplers() -> list[str]:
    from rill.samplers import INFO

    return [name for name, info in INFO.items() if not info.stochastic]


def oversaturation_onset(rows: list[dict]) -> float | None:
    for r in sorted(rows, key=lambda r: r["guidance"]):
        if r["saturation"] > 1.10 * r["saturation_real"] or r["clipped"] > r["clipped_real"] + 0.02:
            return r["guidance"]
    return None


def _pick(r: dict) -> dict:
    keys = (
        "fd",
        "fd_real_floor",
        "precision",
        "recall",
        "adherence",
        "adherence_heldout",
        "adherence_real",
        "diversity",
        "saturation",
        "saturation_real",
        "clipped",
        "clipped_real",
        "generation_seconds",
    )
    return {k: r.get(k) for k in keys}


def sweep_model(
    name: str, samplers: list[str], nfes: list[int], guidances: list[float], n: int, path: str | None = None
) -> dict:
    from rill.eval import evaluate_model
    from rill.model import bundled_model, load_model

    model = load_model(path) if path else bundled_model(name)
    out: dict = {
        "n_per_prompt": n,
        "default_guidance": float(model.config.guidance),
        "nfe": {},
        "guidance": [],
    }
    for sampler in samplers:
        out["nfe"][sampler] = {}
        for nfe in nfes:
            try:
                r = evaluate_model(model, name, n=n, nfe=nfe, sampler=sampler, seed=0, log=False)
            except ValueError as e:  # e.g. a multistep sampler that needs more steps than this NFE gives
                print(f"  {name} {sampler} NFE {nfe}: skipped ({e})", flush=True)
                continue
            out["nfe"][sampler][nfe] = _pick(r)
            print(
                f"  {name} {sampler:>10} NFE {nfe:>3}: FD {r['fd']:.2f}  adherence {r['adherence']:.3f}",
                flush=True,
            )
    for w in guidances:
        r = evaluate_model(model, name, n=n, nfe=16, sampler="auto", guidance=w, seed=0, log=False)
        out["guidance"].append({"guidance": w, **_pick(r)})
        print(
            f"  {name} guidance {w:>4}: FD {r['fd']:.2f} adherence {r['adherence']:.3f} "
            f"saturation {r['saturation']:.3f} clipped {100 * r['clipped']:.2f}%",
            flush=True,
        )
    out["oversaturation_onset"] = oversaturation_onset(out["guidance"])
    return out


def plot(name: str, res: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = []
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for sampler, rows in res["nfe"].items():
        if rows:
            xs = sorted(int(k) for k in rows)
            ax.plot(xs, [rows[k if k in rows else str(k)]["fd"] for k in xs], marker="o", label=sampler)
    floor = next((r["fd_real_floor"] for rows in res["nfe"].values() for r in rows.values()), None)
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", lw=1, label="real vs real")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="NFE (denoiser evaluations)",
        ylabel="Fréchet distance",
        title=f"{name}: FD vs NFE (guidance {res['default_guidance']:g})",
    )
    ticks = sorted({int(k) for rows in res["nfe"].values() for k in rows})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.append(f"sweep_nfe_{name}.png")
    fig.savefig(folder / files[-1], dpi=110)
    plt.close(fig)

    g = res["guidance"]
    ws = [r["guidance"] for r in g]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    axes[0].plot(ws, [r["fd"] for r in g], marker="o")
    axes[0].set(xlabel="guidance w", ylabel="Fréchet distance", title="quality")
    axes[1].plot(ws, [100 * r["adherence"] for r in g], marker="o", label="all prompts")
    if any(r.get("adherence_heldout") is not None for r in g):
        axes[1].plot(ws, [100 * (r["adherence_heldout"] or 0) for r in g], marker="s", label="held-out pairs")
    axes[1].set(xlabel="guidance w", ylabel="adherence (%)", title="prompt adherence")
    axes[1].legend(fontsize=7)
    axes[2].plot(ws, [r["saturation"] for r in g], marker="o", label="mean saturation")
    axes[2].plot(ws, [r["clipped"] for r in g], marker="s", label="clipped fraction")
    axes[2].axhline(g[0]["saturation_real"], color="C0", ls="--", lw=1, label="real saturation")
    axes[2].axhline(g[0]["clipped_real"], color="C1", ls=":", lw=1, label="real clipped")
    if res.get("oversaturation_onset") is not None:
        for ax in axes:
            ax.axvline(res["oversaturation_onset"], color="red", lw=1, alpha=0.5)
    axes[2].set(xlabel="guidance w", title="saturation (red: onset)")
    axes[2].legend(fontsize=7)
    fig.suptitle(f"{name}: classifier-free guidance sweep (NFE 16, sampler auto)")
    fig.tight_layout()
    files.append(f"sweep_guidance_{name}.png")
    fig.savefig(folder / files[-1], dpi=110)
    plt.close(fig)
    return files


def markdown(results: dict) -> str:
    lines = [
        "# Evaluation sweeps on the bundled models",
        "",
        "Written by `python benchmarks/eval_sweeps.py`. FD with rill's feature CNN; compare values within a "
        "table only (same N and prompts).",
        "",
    ]
    for name, res in results["models"].items():
        nfes = sorted({int(k) for rows in res["nfe"].values() for k in rows})
        lines += [
            f"## {name}: FD vs NFE ({res['n_per_prompt']} images per prompt, guidance "
            f"{res['default_guidance']:g})",
            "",
            "| sampler | " + " | ".join(f"NFE {k}" for k in nfes) + " |",
            "|---|" + "---:|" * len(nfes),
        ]
        for sampler, rows in res["nfe"].items():
            cells = [
                f"{rows[k]['fd']:.2f}"
                if k in rows
                else (f"{rows[str(k)]['fd']:.2f}" if str(k) in rows else "-")
                for k in nfes
            ]
            lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
        floor = next((r["fd_real_floor"] for rows in res["nfe"].values() for r in rows.values()), None)
        if floor is not None:
            lines += ["", f"Real vs real FD at this sample size: {floor:.2f} (the floor for this table)."]
        lines += [
            "",
            f"## {name}: guidance sweep (NFE 16, sampler auto)",
            "",
            "| w | FD | adherence | held-out adherence | saturation (real) | clipped (real) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in res["guidance"]:
            held = f"{100 * r['adherence_heldout']:.1f}%" if r.get("adherence_heldout") is not None else "-"
            lines.append(
                f"| {r['guidance']:g} | {r['fd']:.2f} | {100 * r['adherence']:.1f}% | {held} | "
                f"{r['saturation']:.3f} ({r['saturation_real']:.3f}) | {100 * r['clipped']:.2f}% "
                f"({100 * r['clipped_real']:.2f}%) |"
            )
        onset = res.get("oversaturation_onset")
        lines += [
            "",
            f"Oversaturation onset: {f'w = {onset:g}' if onset is not None else 'none in the swept range'}.",
            "",
            *(f"![{f}]({f})" for f in res.get("plots", [])),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,shapes")
    ap.add_argument("--samplers", default=None, help="comma-separated (default: every deterministic sampler)")
    ap.add_argument("--nfes", default="4,8,16,32")
    ap.add_argument("--guidances", default="1,1.5,2,3,4,6,8")
    ap.add_argument("--n", type=int, default=None, help="images per prompt (default: digits 20, shapes 4)")
    ap.add_argument("--threads", type=int, default=1)
    add_checkpoint_flag(ap)
    ap.add_argument("--out-dir", default=str(RESULTS))
    ap.add_argument("--write-docs", action="store_true", help="also regenerate docs/quality.md")
    ap.add_argument(
        "--replot", action="store_true", help="only redraw plots and tables from eval_sweeps.json"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(args.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if args.replot:
        results = json.loads((folder / "eval_sweeps.json").read_text())
        for name, res in results["models"].items():
            res["plots"] = plot(name, res, folder)
        (folder / "eval_sweeps.md").write_text(markdown(results))
        return 0
    samplers = args.samplers.split(",") if args.samplers else deterministic_samplers()
    nfes = [int(s) for s in args.nfes.split(",")]
    guidances = [float(s) for s in args.guidances.split(",")]
    t0 = time.time()
    results = {"samplers": samplers, "models": {}}
    for name in args.models.split(","):
        paths = checkpoint_paths(args)
        res = sweep_model(name, samplers, nfes, guidances, args.n or DEFAULT_N[name], paths.get(name))
        res["checkpoint"] = paths.get(name, f"bundled:{name}")
        res["plots"] = plot(name, res, folder)
        results["models"][name] = res
    results["seconds"] = round(time.time() - t0, 1)
    path = folder / "eval_sweeps.json"
    old = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    old["models"].update(results["models"])  # a partial run (--models digits) keeps the other model's results
    results["models"] = old["models"]
    path.write_text(json.dumps(results, indent=2) + "\n")
    (folder / "eval_sweeps.md").write_text(markdown(results))
    print(f"wrote {path} and eval_sweeps.md in {results['seconds']}s")
    if args.write_docs:
        from benchmarks.quality_report import write_quality_doc

        print(f"wrote {write_quality_doc(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
