"""Does a digits model memorise its 1,438 training digits? Two measures per model file:

1. The denoising error per noise level on the "train" split against the "heldout" split (same noise, same
   captions' templates): E||D(x + σn; σ) − x||² per pixel. A net that memorises has a train error well below
   its held-out error at small and middle σ.
2. FD of generated digits (w = 1) against the real held-out digits, which no model trained on, next to FD
   against the "train" split (the reference of rill eval and the recipe sweep, which rewards copying). The
   floor: 300 real training digits against the held-out ones.
3. Copying: for generated digits (w = 1, the validation prompts and seeds of rill.eval.guidance), the pixel
   distance to the nearest training digit, against the same distance for the real held-out digits. A ratio
   below 1 means the samples sit closer to training images than fresh real digits do.

    python benchmarks/digits_overfit.py --model a=/path/5min/model.safetensors --model b=/path/10min/...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import publish  # noqa: E402

SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


@torch.no_grad()
def denoise_error(model, images: torch.Tensor, captions: list[str], sigma: float, seed: int = 0) -> float:
    """Mean squared x0 error per pixel at one σ (fixed noise from `seed`)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g)
    total = 0.0
    for i in range(0, len(images), 256):
        x0, cond = images[i : i + 256], model.encode(captions[i : i + 256])
        s = torch.full((len(x0),), sigma)
        x0_hat = model.denoiser(x0 + sigma * noise[i : i + 256], s, cond)
        total += float(((x0_hat - x0) ** 2).sum())
    return total / images.numel()


PEER_SIGMAS = (0.1, 0.2, 0.5, 1.0)  # train_vs_diffusers.py's table


def denoise_errors(models: dict) -> dict:
    """Per model and σ, the x0 error per pixel on the train and held-out digits (same noise for both)."""
    from rill.data.digits import DigitsDataset

    sets = {split: DigitsDataset(split) for split in ("train", "heldout")}
    return {name: {str(s): {split: denoise_error(m, d.images, d.captions, s) for split, d in sets.items()}
                   for s in PEER_SIGMAS} for name, m in models.items()}  # fmt: skip


def denoise_table(err: dict) -> list[str]:
    lines = ["Denoising error per pixel on the 359 held-out digits (the 1,438 training digits in brackets), "
             "the same noise for both models: lower held-out error is better generalisation, and a held-out "
             "error far above the train error is memorising (benchmarks/digits_overfit.py).", "",
             "| model | " + " | ".join(f"σ = {s}" for s in err["rill"]) + " |",
             "|---|" + "---:|" * len(err["rill"])]  # fmt: skip
    for name, row in err.items():
        cells = " | ".join(f"{v['heldout']:.4f} ({v['train']:.4f})" for v in row.values())
        lines.append(f"| {name} | {cells} |")
    return lines + [""]


def nearest(a: torch.Tensor, b: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """Per row of a, the L2 distance (pixels in [-1, 1]) to its nearest row of b."""
    d = torch.cdist(a.flatten(1), b.flatten(1))
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return d.min(dim=1).values


def measure(name: str, path: str) -> dict:
    from rill.data.digits import DigitsDataset
    from rill.eval.guidance import VALIDATION_SEED, validation_prompts
    from rill.inference import generate
    from rill.model import load_model

    model = load_model(path).eval()
    train, held = DigitsDataset("train"), DigitsDataset("heldout")
    row = {"model": name, "steps": (model.info or {}).get("step")}
    for s in SIGMAS:
        tr = denoise_error(model, train.images, train.captions, s)
        he = denoise_error(model, held.images, held.captions, s)
        row[s] = (tr, he)
    gen = generate(model, validation_prompts("digits"), n=30, nfe=16, guidance=1.0, seed=VALIDATION_SEED)
    d_gen = nearest(gen, train.images).median().item()
    d_held = nearest(held.images, train.images).median().item()
    d_train = nearest(train.images, train.images, exclude_self=True).median().item()
    row.update(d_gen=d_gen, d_held=d_held, d_train=d_train, **fds(gen, train.images, held.images))
    return row


def fds(gen: torch.Tensor, train: torch.Tensor, held: torch.Tensor) -> dict:
    from rill.eval.features import classifier_for, extract_features
    from rill.eval.metrics import frechet_distance

    net = classifier_for("digits", log=False)
    f_gen, f_train, f_held = (extract_features(net, x) for x in (gen, train, held))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: len(gen)]
    return dict(fd_held=frechet_distance(f_gen, f_held), fd_train=frechet_distance(f_gen, f_train),
                fd_floor=frechet_distance(f_train[pick], f_held))  # fmt: skip


def table(rows: list[dict]) -> str:
    head = " | ".join(f"σ={s}" for s in SIGMAS)
    lines = [
        "# Do the digits models memorise? (benchmarks/digits_overfit.py)", "",
        __doc__.split("\n\n")[0].replace("\n", " "), "",
        "Denoising error per pixel, train / held-out (ratio held-out ÷ train in brackets):", "",
        f"| model | steps | {head} |", "|---|---:|" + "---:|" * len(SIGMAS),
    ]  # fmt: skip
    for r in rows:
        cells = " | ".join(f"{r[s][0]:.4f} / {r[s][1]:.4f} ({r[s][1] / r[s][0]:.2f})" for s in SIGMAS)
        lines.append(f"| {r['model']} | {r['steps']} | {cells} |")
    lines += ["", "Median distance to the nearest training digit (pixels in [-1, 1], 64 of them):", "",
              "| model | generated (w = 1, 300) | real held-out (359) | generated ÷ held-out |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        ratio = r["d_gen"] / r["d_held"]
        lines.append(f"| {r['model']} | {r['d_gen']:.3f} | {r['d_held']:.3f} | {ratio:.2f} |")
    lines += ["", f"(Training digits to their nearest other training digit: {rows[0]['d_train']:.3f}.)", "",
              "FD of the generated digits (w = 1, 300) with rill's digit feature CNN:", "",
              "| model | against held-out (359) | against train (1,438) |", "|---|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['fd_held']:.2f} | {r['fd_train']:.2f} |")
    floor = rows[0]["fd_floor"]
    lines += ["", f"(Floor: 300 real training digits against the held-out ones: FD {floor:.2f}.)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH of a digits model file")
    ap.add_argument("--out", default="digits_overfit.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for spec in args.model:
        if "=" not in spec:
            ap.error(f"--model {spec!r}: write NAME=PATH, e.g. --model c24-10min=runs/x/model.safetensors")
        name, path = spec.split("=", 1)
        rows.append(measure(name, path))
    publish(table(rows), ROOT / "benchmarks" / "results" / args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
