"""Measure a shapes model's prompt adherence with rill's programmatic checker (rill.eval.shapes_check):
colour, shape, size and position (or relation) read back from the pixels and compared with the prompt.

    python recipes/check_shapes.py [MODEL.safetensors | bundled name] [--n 100] [--guidance 1 2 3] [--nfe 25]

Prompts are the captions of N fresh scenes of the shapes "train" split (seen colour/shape pairs) and of the
"heldout" split (pairs never seen in training), reported separately, for one-shape and two-shape prompts; the
issue's target is "colour_and_shape" (both right for every object). Prints one JSON line per guidance scale
(the same prompts and seeds for every scale).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def _summary(rows: list[dict], prompts: list[str]) -> dict:
    """Fractions right (all attributes / colour / shape / colour and shape together), for one-shape prompts,
    two-shape prompts and all."""
    groups = {
        "one_shape": [r for r, p in zip(rows, prompts) if " of " not in p and " above " not in p],
        "two_shapes": [r for r, p in zip(rows, prompts) if " of " in p or " above " in p],
        "all": rows,
    }
    out = {}
    for name, sel in groups.items():
        if sel:
            out[name] = {
                "n": len(sel),
                "correct": _mean(r["correct"] for r in sel),
                "colour": _mean(r["colour"] for r in sel),
                "shape": _mean(r["shape"] for r in sel),
                "colour_and_shape": _mean(r["colour"] and r["shape"] for r in sel),
            }
    return out


def _mean(values) -> float:
    values = [bool(v) for v in values]
    return round(sum(values) / len(values), 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="shapes", help="a .safetensors file or a bundled model name")
    p.add_argument("--n", type=int, default=100, help="prompts from each split")
    p.add_argument("--guidance", type=float, nargs="+", default=[3.0], help="one or more scales to sweep")
    p.add_argument("--nfe", type=int, default=25)
    p.add_argument("--sampler", default="auto")
    p.add_argument("--seed", type=int, default=1000, help="noise seed of the first prompt (then +1 each)")
    p.add_argument(
        "--prompt-seed",
        type=int,
        default=12345,
        help="seed of the fresh scenes whose captions are the prompts (12345 = the recipe's test prompts)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid", help="also save the first 64 images as a PNG grid here")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from rill.data import load_dataset
    from rill.eval.shapes_check import check_image
    from rill.inference.generate import generate
    from rill.model import bundled_model, load_model

    model = load_model(args.model) if args.model.endswith(".safetensors") else bundled_model(args.model)
    splits = {}
    for split in ("train", "heldout"):
        ds = load_dataset("shapes", split=split, seed=args.prompt_seed)  # scenes the model was not trained on
        splits[split] = [ds.caption(i) for i in range(args.n)]
    for guidance in args.guidance:
        out = {"model": args.model, "guidance": guidance, "nfe": args.nfe, "sampler": args.sampler,
               "seed": args.seed, "prompt_seed": args.prompt_seed}  # fmt: skip
        t0 = time.perf_counter()
        for split, prompts in splits.items():
            # one prompt per call with its own seed: every image has its own starting noise
            images = torch.cat(
                [
                    generate(
                        model,
                        [pr],
                        n=1,
                        nfe=args.nfe,
                        sampler=args.sampler,
                        guidance=guidance,
                        seed=args.seed + i,
                        device="cpu",
                    )
                    for i, pr in enumerate(prompts)
                ]
            )
            if args.grid and split == "train":
                from rill.viz import save_grid

                stem, ext = os.path.splitext(args.grid)
                path = args.grid if len(args.guidance) == 1 else f"{stem}_g{guidance:g}{ext or '.png'}"
                save_grid(images[:64], path, nrow=8, scale=3)
            rows = [check_image(img, pr) for img, pr in zip(images, prompts)]
            out[split] = _summary(rows, prompts)
        out["generation_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
