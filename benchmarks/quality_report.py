"""docs/quality.md, regenerated from measured results:

    python -m benchmarks.quality_report              # evaluate bundled models + validations, rewrite the doc
    python -m benchmarks.quality_report --skip-eval  # only rewrite the doc from benchmarks/results/*.json

Reads benchmarks/results/: eval_{digits,shapes}.json (this command), eval_sweeps.json and its PNGs
(benchmarks/eval_sweeps.py), train_vs_diffusers.md and train_throughput.md (their benchmarks),
validation.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._models import add_checkpoint_flag, checkpoint_paths

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "quality.md"


INTRO = """# Sample quality, prompt adherence and likelihood

Every number here was measured by the commands named beside it, on a 2-core CPU shared with other work.
Regenerate the page with `python -m benchmarks.quality_report` (bundled-model numbers and validations) after
`python benchmarks/eval_sweeps.py`, `python benchmarks/train_vs_diffusers.py` and
`python benchmarks/train_throughput.py` (each writes its results to benchmarks/results/).

## What is measured

- **Fréchet distance (FD)** between Gaussian fits of features (Heusel et al. 2017, Eq. 6). Features: the
  128-wide penultimate layer of a small CNN that rill trains on the dataset's real images (digits: 10 classes;
  shapes: multi-label colour×shape, grid cell and size). Not FID: FID means Inception-v3 features; pass
  `--features hf:PATH` for a local CLIP / DINOv2. *Real vs real* is the FD between two real sets of the same
  sizes: the floor at this sample size (FD is biased upward at small N: compare only at equal N).
  Measured sensitivity of the shapes features (N ≈ 600, floor 1.80): Gaussian pixel noise of std 0.3 adds
  only 0.39, a 3x3 blur 1.60, wrong content hundreds: read shapes FD mainly as a content metric.
- **Precision / recall**: k-NN manifolds, k = 3 (Kynkäänniemi et al. 2019).
- **Diversity**: mean pairwise feature distance among the images of one prompt, averaged over prompts.
- **Adherence**: digits: an RBF-SVM fitted only on the 359 held-out real digits reads the digit of images made
  for "a handwritten digit k". Shapes: a programmatic checker reads colour, shape, size and position (or the
  pair's relation) from the pixels; reported separately for prompts naming a held-out (colour, shape) pair
  that the model never saw in training.
- **Saturation**: mean HSV saturation of the pixels brighter than 25% (RGB) or mean |x| (grey), and the
  fraction of pixel values at ±1 (what the final clamp cut).
- **NLL**: bits/dim through the probability-flow ODE (Song et al. 2021, Eq. 39), RK45 in log σ, Hutchinson
  trace, uniform dequantisation. Convention: level k of L sits at 2k/(L−1) − 1 and
  bits/dim = (−log p(x̃)/d + log((L−1)/2)) / ln 2, i.e. + log 127.5 nats per dimension for 8-bit images
  (digits have L = 17 levels). It bounds log p at σ_min = 0.002, not at σ = 0.
"""


def validate(seed: int = 0) -> dict[str, Any]:
    """The checks behind the numbers: NLL vs the exact mixture density, the shapes checker on real renders,
    the digit judge on real digits it was not fitted on."""
    from rill.core.mixture import GaussianMixture
    from rill.data import load_dataset
    from rill.eval.adherence import DigitJudge
    from rill.eval.likelihood import log_likelihood
    from rill.eval.shapes_check import check_images

    out: dict[str, Any] = {}
    for dim, trace, probes in ((2, "exact", 1), (16, "hutchinson", 16)):
        gm = GaussianMixture.random(dim, 4, std_range=(0.03, 0.1), seed=3)
        g = torch.Generator().manual_seed(seed)
        x = gm.sample(48, generator=g, sigma=0.002)
        exact = gm.log_prob(x, 0.002)
        est, nfe = log_likelihood(
            gm,
            x,
            trace=trace,
            probes=probes,
            generator=g,
            rtol=1e-6,
            atol=1e-6,
            log_prior=lambda y, gm=gm: gm.log_prob(y, 80.0),
            return_nfe=True,
        )
        out[f"nll_d{dim}_{trace}"] = {
            "max_rel_error_per_sample": float(((est - exact).abs() / exact.abs()).max()),
            "rel_error_of_mean": float(abs(est.mean() - exact.mean()) / abs(exact.mean())),
            "mean_exact_nats": float(exact.mean()),
            "mean_estimate_nats": float(est.mean()),
            "nfe": nfe,
            "probes": probes if trace == "hutchinson" else None,
        }
    for split in ("all", "heldout"):
        ds = load_dataset("shapes", split=split, n=1000, seed=11)
        images = torch.stack([ds[i][0] for i in range(len(ds))])
        out[f"shapes_checker_{split}"] = check_images(images, ds.captions)["all"]["correct"]
    out["digit_judge_on_train"] = DigitJudge().accuracy_on_real("train")
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _embed(path: Path, drop_title: bool = True) -> list[str]:
    if not path.is_file():
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        return [f"_Not run yet: `{shown}` is missing._", ""]
    lines = path.read_text().splitlines()
    lines = lines[1:] if drop_title and lines and lines[0].startswith("# ") else lines
    return [("#" + line if line.startswith("## ") else line) for line in lines] + [""]  # nest under our H2


def _training_steps(checkpoint: str | None) -> str:
    """Training steps recorded in a model file ("bundled:NAME" or a path), for the table; "?" if unknown."""
    from rill.model import read_safetensors

    try:
        if checkpoint and checkpoint.startswith("bundled:"):
            from importlib import resources

            path = resources.files("rill") / "assets" / f"{checkpoint.split(':', 1)[1]}.safetensors"
        else:
            path = Path(checkpoint or "")
        info = json.loads(read_safetensors(path)[1].get("rill.info", "{}"))
        return str(info.get("step", "?"))
    except (OSError, ValueError):
        return "?"


def _summary(evals: dict[str, Any], sweeps: dict[str, Any] | None) -> list[str]:
    """Findings computed from the numbers (so that they stay true when the numbers change)."""
    out = []
    for name, r in evals.items():
        if r:
            ck = str(r.get("checkpoint") or "")
            which = "bundled" if ck.startswith("bundled:") else f"`{ck}`"
            out.append(
                f"- **{name}** ({which}, {_training_steps(r.get('checkpoint'))} training steps): FD "
                f"{r['fd']:.2f} against a real-vs-real floor of {r['fd_real_floor']:.2f}; prompt adherence "
                f"{_pct(r.get('adherence'))} (real images: {_pct(r.get('adherence_real'))})"
                + (
                    f", held-out pairs {_pct(r['adherence_heldout'])}"
                    if r.get("adherence_heldout") is not None
                    else ""
                )
                + "."
            )
    for name, res in (sweeps or {}).get("models", {}).items():
        g = res.get("guidance") or []
        if g:
            best = min(g, key=lambda r: r["fd"])
            out.append(
                f"- {name}: the lowest FD of the guidance sweep is at w = {best['guidance']:g} "
                f"({best['fd']:.2f}, adherence {_pct(best['adherence'])}); the model's default is "
                f"w = {res['default_guidance']:g}."
            )
        for nfe in sorted({int(k) for rows in res["nfe"].values() for k in rows}):
            cells = {s: rows.get(str(nfe), rows.get(nfe)) for s, rows in res["nfe"].items()}
            cells = {s: c["fd"] for s, c in cells.items() if c}
            if cells:
                s_best = min(cells, key=cells.get)
                out.append(
                    f"  - {name} at NFE {nfe}: best sampler {s_best} (FD {cells[s_best]:.2f}), worst "
                    f"{max(cells, key=cells.get)} (FD {max(cells.values()):.2f})."
                )
    return out + [""] if out else []


def write_quality_doc(results: Path = RESULTS, doc: Path = DOC) -> Path:
    results, doc = Path(results), Path(doc)
    rel = Path("..") / results.relative_to(ROOT) if results.is_relative_to(ROOT) else results
    L = INTRO.splitlines()
    evals = {name: _load(results / f"eval_{name}.json") for name in ("digits", "shapes")}
    summary = _summary(evals, _load(results / "eval_sweeps.json"))
    if summary:
        L += ["## Summary (computed from the tables below)", "", *summary]
    L += ["## The models", ""]
    if not any(evals.values()):
        L += ["_Not run yet (`python -m benchmarks.quality_report`)._", ""]
    else:
        L += [
            "| model | images | sampler / NFE / w | FD (real vs real) | precision | recall | diversity "
            "| adherence (real images) | held-out adherence | saturation (real) | clipped (real) "
            "| NLL bits/dim |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in evals.items():
            if not r:
                continue
            nll = r.get("nll")
            L.append(
                f"| {name} ({r.get('checkpoint')}) | {r['images']} | {r['sampler']} / {r['nfe']} / "
                f"{r['guidance']} | {_num(r['fd'])} "
                f"({_num(r['fd_real_floor'])}) | {_num(r['precision'], 3)} | {_num(r['recall'], 3)} | "
                f"{_num(r['diversity'])} | {_pct(r.get('adherence'))} ({_pct(r.get('adherence_real'))}) | "
                f"{_pct(r.get('adherence_heldout'))} | {_num(r['saturation'], 3)} "
                f"({_num(r['saturation_real'], 3)})"
                f" | {_pct(r['clipped'])} ({_pct(r['clipped_real'])}) | "
                f"{_num(nll['bpd'], 3) + ' ± ' + _num(nll['bpd_stderr'], 3) if nll else '-'} |"
            )
        L += [
            "",
            "Command: `python -m benchmarks.quality_report [--checkpoint NAME=PATH]`, the same numbers as "
            "`rill eval digits` / `rill eval shapes` (defaults: 10 digit prompts × 50, 36 shapes prompts "
            "(12 naming held-out pairs) × 16, NFE 16, sampler auto, the model's guidance) plus `--nll 32`.",
            "",
        ]
        shapes = evals.get("shapes")
        if shapes and shapes.get("adherence_detail"):
            L += [
                "Shapes adherence per attribute (generated images). An attribute counts as right only "
                "when every object the prompt names is found with it; a pair with fewer than two "
                "detected objects fails every attribute.",
                "",
                "| prompts | all right | count | colour | shape | size | position | relation |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for key in ("all", "seen", "heldout"):
                s = shapes["adherence_detail"].get(key)
                if s:
                    L.append(
                        f"| {key} | "
                        + " | ".join(
                            _pct(s.get(k))
                            for k in ("correct", "count", "colour", "shape", "size", "position", "relation")
                        )
                        + " |"
                    )
            L.append("")
    val = _load(results / "validation.json")
    L += ["## Validation of the measuring instruments", ""]
    if val:
        d2, d16 = val["nll_d2_exact"], val["nll_d16_hutchinson"]
        L += [
            "| check | result |",
            "|---|---|",
            f"| NLL vs exact log p_σmin of a 2-D Gaussian mixture (exact trace, 48 points) "
            f"| max relative error "
            f"{100 * d2['max_rel_error_per_sample']:.3f}% per point ({d2['nfe']} NFE) |",
            f"| NLL vs exact, 16-D mixture, Hutchinson with {d16['probes']} Rademacher probes | mean "
            f"{d16['mean_estimate_nats']:.3f} vs {d16['mean_exact_nats']:.3f} nats: "
            f"{100 * d16['rel_error_of_mean']:.3f}% (worst single point "
            f"{100 * d16['max_rel_error_per_sample']:.1f}%) |",
            f"| shapes checker on 1000 real renders (all pairs / held-out pairs) | "
            f"{_pct(val['shapes_checker_all'])} / {_pct(val['shapes_checker_heldout'])} right |",
            f"| digit judge (fitted on held-out digits) on the 1438 train digits "
            f"| {_pct(val['digit_judge_on_train'])} |",
            "",
        ]
    else:
        L += ["_Not run yet._", ""]
    sweeps = _load(results / "eval_sweeps.json")
    L += ["## Sweeps: NFE and guidance", ""]
    if sweeps:
        for name, res in sweeps["models"].items():
            onset = res.get("oversaturation_onset")
            L += [
                f"**{name}** — oversaturation onset: "
                f"{f'w = {onset:g}' if onset is not None else 'none in the swept range'} "
                "(mean saturation > 1.1× real, or clipped pixels > real + 2 points).",
                "",
            ]
            L += [f"![{f}]({rel / f})" for f in res.get("plots", [])] + [""]
        L += _embed(results / "eval_sweeps.md")
    else:
        L += ["_Not run yet (`python benchmarks/eval_sweeps.py`)._", ""]
    L += ["## Peer baseline: rill vs diffusers, same data and wall clock", ""]
    L += _embed(results / "train_vs_diffusers.md")
    for extra in sorted(results.glob("train_vs_diffusers_*.md")):  # other budgets, kept for the record
        ratio = next((line for line in extra.read_text().splitlines() if line.startswith("Real vs real")), "")
        L += [f"Another run: [{extra.name}]({rel / extra.name}). {ratio}", ""]
    L += ["## Training throughput", ""]
    L += _embed(results / "train_throughput.md")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(L).replace("\n## ", "\n\n## ").replace("\n\n\n", "\n\n").rstrip() + "\n")
    return doc


def main_report(argv: list[str]) -> int:
    from rill.eval.run import evaluate_model, format_table, to_jsonable

    prog = "python -m benchmarks.quality_report"
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--skip-eval", action="store_true", help="only rewrite the doc from existing results")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core CPU)"
    )
    ap.add_argument("--models", default="digits,shapes")
    ap.add_argument("--nll", type=int, default=32, help="held-out images for the NLL estimate (0 = skip)")
    ap.add_argument("--results", default=str(RESULTS))
    add_checkpoint_flag(ap)
    ap.add_argument("--doc", default=str(DOC))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    if not args.skip_eval:
        from rill.model import bundled_model, load_model

        paths = checkpoint_paths(args)

        t0 = time.time()
        (results / "validation.json").write_text(json.dumps(validate(), indent=2) + "\n")
        print(f"validation: {time.time() - t0:.0f}s")
        for name in args.models.split(","):
            model = load_model(paths[name]) if name in paths else bundled_model(name)
            r = evaluate_model(model, name, n=50 if name == "digits" else 16, nll=args.nll)
            r = {"checkpoint": paths.get(name, f"bundled:{name}"), **r}
            print(format_table(r))
            (results / f"eval_{name}.json").write_text(json.dumps(to_jsonable(r), indent=2) + "\n")
    print(f"wrote {write_quality_doc(results, Path(args.doc))}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main_report(sys.argv[1:]))
