"""Emoji recipes at equal compute: EDM vs flow matching on the U-Net, U-Net vs DiT with the better objective.

Each run is a `rill train` on the emoji train split for the same wall-clock minutes on ONE thread (COMMANDS
below); this script evaluates the finished runs and writes benchmarks/results/emoji_recipes.md:

    python -m benchmarks.emoji_recipes --checkpoint unet-edm=runs/cmp/unet-edm --checkpoint unet-flow=...

Metrics (rill.eval.features' emoji feature net: a CNN with one class per emoji, trained on the real renders):
- FD: Fréchet distance of the generated images' features to all 3,527 real renders; "real" row = the real
  renders of the same prompts (the floor at this sample size).
- top-5: the prompted emoji is among the feature net's 5 most likely classes (a recognisability proxy).
- train img/s: images per second over the run (log.csv), on a shared 2-core machine (load noted).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import torch

from benchmarks._models import add_checkpoint_flag, checkpoint_paths

OUT = Path(__file__).parent / "results" / "emoji_recipes.md"
COMMANDS = {
    "unet-edm": "rill train --preset emoji --set model.parametrisation=edm",
    "unet-flow": "rill train --preset emoji --set model.parametrisation=flow",
    "dit-flow": "rill train --preset emoji --set model.parametrisation=flow --set model.net=dit "
    "--set model.net_preset=tiny --set 'model.net_overrides={}' --lr 1e-3",
    "dit-edm": "rill train --preset emoji --set model.parametrisation=edm --set model.net=dit "
    "--set model.net_preset=tiny --set 'model.net_overrides={}' --lr 1e-3",
}
WHAT = (("flow", "flow"), ("EDM", "edm"), ("DiT tiny", "dit"), ("U-Net", "unet"))  # words of a run's name
COMMON = (
    "--threads 1 --minutes {minutes} --sample-every 0 --checkpoint-every 0 --quiet --out runs/cmp/{name} "
    "--set data_kwargs.templates=1"
)  # one caption per emoji: the text bank encodes in a third of the time


def prompts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """n seen prompts ("an emoji of {name}") of distinct train-split emoji, and their entry indices."""
    from rill.data import load_dataset

    ds = load_dataset("emoji", split="train")
    entries = sorted(set(ds.entry_of))
    pick = random.Random(seed).sample(entries, n)
    first = {e: ds.entry_of.index(e) for e in pick}
    return [ds.captions[first[e]] for e in pick], pick  # template 0: "an emoji of …"


def run_stats(folder: Path) -> dict[str, float]:
    """Steps and wall-clock images/s of a run folder: its last checkpoint's state.json (step, images_seen,
    wall_time), else log.csv."""
    states = sorted((folder / "checkpoints").glob("step-*/state.json"))
    if states:
        state = json.loads(states[-1].read_text(encoding="utf-8"))
        return {"steps": int(state["step"]), "img_s": state["images_seen"] / max(state["wall_time"], 1e-9)}
    rows = list(csv.DictReader(open(folder / "log.csv"))) if (folder / "log.csv").is_file() else []
    ips = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    if not rows:
        return {"steps": 0, "img_s": float("nan")}
    return {"steps": int(rows[-1]["step"]), "img_s": sum(ips) / max(1, len(ips))}


def cpu_throughput(model, images: torch.Tensor, steps: int = 3) -> float:
    """Training images per CPU-second of this thread (forward + backward of the model's loss, text tokens of
    16): load-independent, unlike the wall-clock img/s of a shared machine."""
    enc = {"tokens": torch.randn(len(images), 16, 384), "pooled": torch.randn(len(images), 384)}
    model.train().net.requires_grad_(True)  # loaded models come frozen, in eval mode
    g = torch.Generator().manual_seed(0)
    model.loss(images, enc, generator=g).mean().backward()  # warm-up
    t0 = time.process_time()
    for _ in range(steps):
        model.loss(images, enc, generator=g).mean().backward()
    return steps * len(images) / (time.process_time() - t0)


def evaluate(name: str, path: str, texts: list[str], targets: list[int], real, net, args) -> dict:
    from rill.app.common import model_path
    from rill.eval.features import extract_features
    from rill.eval.metrics import frechet_distance
    from rill.inference import generate
    from rill.model import load_model

    file = Path(model_path(path))
    model = load_model(file)
    t0 = time.time()
    images = generate(model, texts, n=1, nfe=args.nfe, seed=0, batch_size=64)
    gen_s = time.time() - t0
    feats = extract_features(net, images)
    top5 = net.head(feats).topk(5, dim=1).indices
    hit = (top5 == torch.tensor(targets)[:, None]).any(1).float().mean().item()
    subject = subject_hits(images, targets)
    cpu_ips = cpu_throughput(model, real_batch(16), steps=2)
    model.eval()
    stats = run_stats(file.parent)
    from rill.nets import count_parameters

    return dict(name=name, fd=frechet_distance(real, feats), top5=hit, params=count_parameters(model.net),
                subject=subject, gen_s=gen_s, cpu_ips=cpu_ips, **stats)  # fmt: skip


def subject_hits(images: torch.Tensor, targets: list[int]) -> float:
    """Share of images whose prompted emoji's subject rill eval emoji's classifier recognises."""
    from rill.eval.emoji_check import subject_judge

    judge = subject_judge(log=False)
    return float((judge.predict(images) == judge.labels[torch.tensor(targets)]).float().mean())


def real_batch(n: int) -> torch.Tensor:
    from rill.eval.features import dataset_arrays

    return dataset_arrays("emoji", "all")[0][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_flag(ap)
    ap.add_argument("--n", type=int, default=128, help="prompts (distinct seen emoji), one image each")
    ap.add_argument("--nfe", type=int, default=20, help="denoiser calls per image (sampler auto)")
    ap.add_argument("--minutes", type=float, default=6.0, help="the runs' budget (for the commands shown)")
    ap.add_argument("--note", default="", help="a line about the machine (load) for the report")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from rill.data import load_dataset
    from rill.eval.features import classifier_for, dataset_arrays, extract_features

    net = classifier_for("emoji")
    real_images, _ = dataset_arrays("emoji", "all")
    real = extract_features(net, real_images)
    texts, targets = prompts(args.n)
    ds = load_dataset("emoji", split="all")
    same = torch.stack([ds.images[ds.entry_of.index(e)].float() for e in targets])
    floor = extract_features(net, same)
    from rill.eval.metrics import frechet_distance

    top5_real = (net.head(floor).topk(5, 1).indices == torch.tensor(targets)[:, None]).any(1).float().mean()
    rows = [dict(name="real renders (floor)", fd=frechet_distance(real, floor), top5=float(top5_real),
                 subject=subject_hits(same, targets), params=0, gen_s=0.0, steps=0, img_s=float("nan"),
                 cpu_ips=float("nan"))]  # fmt: skip
    for name, path in checkpoint_paths(args).items():
        rows.append(evaluate(name, path, texts, targets, real, net, args))
        print(rows[-1], flush=True)
    cols = ("run", "objective, net", "steps", "img/s (wall)", "img per CPU-s", "params", "FD ↓", "top-5 ↑",
            "subject ↑")  # fmt: skip
    head = "| " + " | ".join(cols) + " |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        what = ", ".join(w for w, key in WHAT if key in r["name"])
        lines.append(f"| {r['name']} | {what} | {r['steps']:,} | {r['img_s']:.0f} | {r['cpu_ips']:.0f} | "
                     f"{r['params']:,} | {r['fd']:.2f} | {100 * r['top5']:.1f}% | "
                     f"{100 * r['subject']:.1f}% |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    minutes = f"{args.minutes:g}"
    cmds = "\n".join(
        f"    {COMMANDS[n]} {COMMON.format(minutes=minutes, name=n)}" for n in checkpoint_paths(args)
    )
    OUT.write_text(
        "# Emoji recipes at equal compute\n\n"
        f"Each run: {args.minutes:g} minutes of `rill train` on ONE thread, emoji train split (one caption "
        "per emoji), batch 128, lr 2e-3 (DiT 1e-3), seed 0. "
        f"{args.note}\nEvaluation: {args.n} seen prompts (distinct emoji, 'an emoji of "
        f"…'), one image each, sampler auto at {args.nfe} calls, the model's guidance; FD on the emoji "
        "feature net (rill.eval.features, one class per emoji) against all 3,527 real renders; top-5 = the "
        "prompted emoji among the feature net's 5 best classes; subject = the prompted subject recognised by "
        "`rill eval emoji`'s classifier (1,494 subjects, trained on augmented real renders).\n\n"
        f"{table}\n\nCommands:\n\n{cmds}\n    python -m benchmarks.emoji_recipes "
        + " ".join(f"--checkpoint {n}={p}" for n, p in checkpoint_paths(args).items())
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
