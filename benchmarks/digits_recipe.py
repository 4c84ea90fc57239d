"""Which digits recipe learns the most per CPU-minute: train variants of the `digits` preset, score each on
the validation set (never the test prompts / seeds), one JSON line per variant in
benchmarks/results/digits_recipe.jsonl.

    python benchmarks/digits_recipe.py --variant wsd --steps 1500     # one variant, equal steps
    python benchmarks/digits_recipe.py --variant wsd --minutes 4      # one variant, equal wall clock
    python benchmarks/digits_recipe.py --table                        # -> benchmarks/results/digits_recipe.md

Validation: the ten prompts "the number <word>" (a caption template; the test set of `rill eval` and of
benchmarks/train_vs_diffusers.py is "a handwritten digit <k>" with seeds from 0), 30 images each from seed
10,000, NFE 16, sampler auto, guidance 1 / 1.5 / 2 / 3; FD against the "train" split with rill's feature CNN,
adherence read by the judge fitted on the held-out digits. The score of a variant is its FD at its best
guidance among those with adherence >= 0.98 (rill.eval.guidance.choose_setting); from the p-* rows on, the
sweep also tries w = 1.5 and 2 only for σ <= 0.5 (the guidance interval).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
GUIDANCES = (1.0, 1.5, 2.0)
INTERVALS = (None, (0.0, 0.5))  # guidance at every σ, and only for σ <= 0.5 (benchmarks/guidance_interval.py)

# dotted overrides of the `digits` preset
VARIANTS: dict[str, dict] = {
    "preset": {},
    "wsd": {"lr_schedule": "wsd", "cooldown_fraction": 0.2},
    "wsd40": {"lr_schedule": "wsd", "cooldown_fraction": 0.4},
    "wsd-ema10k": {"lr_schedule": "wsd", "ema_halflife_images": 10_000},
    "wsd-ema150k": {"lr_schedule": "wsd", "ema_halflife_images": 150_000, "ema_rampup": 0.1},
    "wsd-noema": {"lr_schedule": "wsd", "ema_decay": 0.0},
    "wsd-pmean-0.6": {"lr_schedule": "wsd", "p_mean": -0.6},
    "wsd-pstd-1.6": {"lr_schedule": "wsd", "p_std": 1.6},
    "wsd-b64": {"lr_schedule": "wsd", "batch_size": 64},
    "wsd-b256": {"lr_schedule": "wsd", "batch_size": 256, "lr": 3e-3},
    "wsd-lr4e-3": {"lr_schedule": "wsd", "lr": 4e-3},
    "wsd-c24": {"lr_schedule": "wsd", "model.net_overrides.channels": 24},
    "wsd-c48": {"lr_schedule": "wsd", "model.net_overrides.channels": 48},
    "wsd-nomid": {"lr_schedule": "wsd", "model.net_overrides.mid_attn": False},
    # short warm-up, longer cooldown; width / batch / lr for the few hundred steps a loaded CPU gives
    "w50-c32-b128": {"lr_schedule": "wsd", "cooldown_fraction": 0.3, "warmup_steps": 50},
    "w50-c24-b64": {"lr_schedule": "wsd", "cooldown_fraction": 0.3, "warmup_steps": 50, "batch_size": 64,
                    "lr": 3e-3, "model.net_overrides.channels": 24},
    "w50-c16-b64": {"lr_schedule": "wsd", "cooldown_fraction": 0.3, "warmup_steps": 50, "batch_size": 64,
                    "lr": 3e-3, "model.net_overrides.channels": 16},
    "w50-c16-b32": {"lr_schedule": "wsd", "cooldown_fraction": 0.3, "warmup_steps": 50, "batch_size": 32,
                    "lr": 3e-3, "model.net_overrides.channels": 16},
    "w50-c16-b64-lr5e-3": {"lr_schedule": "wsd", "cooldown_fraction": 0.3, "warmup_steps": 50,
                           "batch_size": 64, "lr": 5e-3, "model.net_overrides.channels": 16},
    "w50-c16-b64-ramp0.15": {"lr_schedule": "wsd", "cooldown_fraction": 0.3, "warmup_steps": 50,
                             "batch_size": 64, "lr": 3e-3, "model.net_overrides.channels": 16,
                             "ema_rampup": 0.15},
    # 10-minute budgets (session 11), on the preset of that time: 16 channels, regularised against ~430 epochs
    "p-c16": {"model.net_overrides.channels": 16},
    "p-drop0.1": {"model.net_overrides.channels": 16, "model.net_overrides.dropout": 0.1},
    "p-drop0.2": {"model.net_overrides.channels": 16, "model.net_overrides.dropout": 0.2},
    "p-ema150k": {"model.net_overrides.channels": 16, "ema_halflife_images": 150_000},
    "p-b128": {"model.net_overrides.channels": 16, "batch_size": 128},
    "p-lr2e-3": {"model.net_overrides.channels": 16, "lr": 2e-3},
    "p-c24": {"model.net_overrides.channels": 24},  # the preset since session 11
    "p-c24-drop0.1": {"model.net_overrides.channels": 24, "model.net_overrides.dropout": 0.1},
    "p-c32": {"model.net_overrides.channels": 32},
    "p-c24-pmean-0.6": {"model.net_overrides.channels": 24, "p_mean": -0.6},  # more weight on high noise
    # session 12: the parametrisation (flow matching won big on emoji; the peer trains epsilon, unweighted)
    "p-c24-flow": {"model.net_overrides.channels": 24, "model.parametrisation": "flow"},
    "p-c24-eps": {"model.net_overrides.channels": 24, "model.parametrisation": "epsilon",
                  "min_snr_gamma": None},
    # session 13: non-leaky shift augmentation against memorising (benchmarks/results/digits_overfit.md)
    "p-c24-aug0.5": {"model.net_overrides.channels": 24, "augment_p": 0.5},
    "p-c32-aug0.5": {"model.net_overrides.channels": 32, "augment_p": 0.5},
    "p-c24-aug0.8": {"model.net_overrides.channels": 24, "augment_p": 0.8},
}  # fmt: skip


def validate(model, guidances=GUIDANCES, intervals=INTERVALS) -> dict:
    from rill.eval.guidance import guidance_sweep

    return guidance_sweep(model, "digits", guidances, intervals=list(intervals), log=False)


def run_variant(name: str, steps: int | None, minutes: float | None, seed: int) -> dict:
    import torch

    from rill.model import load_model
    from rill.train import train, train_preset

    torch.set_num_threads(1)
    over = {k: v for k, v in VARIANTS[name].items()}
    out = f"/tmp/rill-recipe/{name}-{steps}-{minutes}-{seed}"
    cfg = train_preset("digits", steps=steps, minutes=minutes, seed=seed, num_threads=1, sample_every=0,
                       checkpoint_every=0, out_dir=out, **over)  # fmt: skip
    t0, c0, l0 = time.time(), time.process_time(), os.getloadavg()[0]
    path = train(cfg, overwrite=True, progress=False)
    wall, cpu = time.time() - t0, time.process_time() - c0
    model = load_model(path)
    info = model.info or {}
    val = validate(model)
    from rill.eval.guidance import choose_setting

    best = choose_setting(val)
    return dict(variant=name, overrides=over, steps=info.get("step"), images=info.get("images_seen"),
                train_s=info.get("wall_time"), wall_s=round(wall, 1), cpu_s=round(cpu, 1),
                load=[round(l0, 2), round(os.getloadavg()[0], 2)], budget_steps=steps, budget_minutes=minutes,
                seed=seed, val=val, best_guidance=best, best_fd=val[best]["fd"],
                maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # fmt: skip


def table(path: Path) -> str:
    from rill.eval.guidance import parse_setting, setting_key

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    about = __doc__.split("\n\n")[2].replace("\n", " ")
    lines = ["# digits recipe variants (validation set)", "",
             f"Written by `python benchmarks/digits_recipe.py --table` from digits_recipe.jsonl. {about}", "",
             "| variant | budget | steps | train s | CPU s | load (start / end) | FD w=1 | w=1.5 | w=2 | "
             "w=3 | w=2, σ ≤ 0.5 | adherence w=1 / 1.5 | best w | best FD |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"]  # fmt: skip
    for r in rows:
        v = {setting_key(*parse_setting(k)): x for k, x in r["val"].items()}
        budget = f"{r['budget_steps']} steps" if r["budget_steps"] else f"{r['budget_minutes']} min"
        lines.append(
            f"| {r['variant']} | {budget} | {r['steps']} | {r['train_s']} | {r['cpu_s']} | "
            f"{r['load'][0]} / {r['load'][1]} | "
            + " | ".join(f"{v[g]['fd']:.2f}" if g in v else "-" for g in (1.0, 1.5, 2.0, 3.0, "2@0-0.5"))
            + f" | {100 * v[1.0]['adherence']:.1f}% / {100 * v[1.5]['adherence']:.1f}% | "
            f"{r['best_guidance']} | **{r['best_fd']:.2f}** |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--log", default=str(RESULTS / "digits_recipe.jsonl"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.table:
        md = table(Path(args.log))
        (RESULTS / "digits_recipe.md").write_text(md)
        print(md)
        return 0
    res = run_variant(args.variant, args.steps, args.minutes, args.seed)
    with open(args.log, "a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
