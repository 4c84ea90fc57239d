"""Measure a digits model's prompt adherence: generate N images per digit and let a classifier fitted only on
the held-out real digits (rill.eval.adherence.DigitJudge) read them.

    python recipes/check_digits.py [MODEL.safetensors | bundled name] [--n 20] [--guidance 3] [--nfe 25]

Prompts cycle through the dataset's caption templates ("a handwritten digit 7", "the number seven", ...), so
the check covers numerals and number words. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="digits", help="a .safetensors file or a bundled model name")
    p.add_argument("--n", type=int, default=20, help="images per digit")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--nfe", type=int, default=25)
    p.add_argument("--sampler", default="auto")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from rill.data.digits import CAPTION_TEMPLATES, NUMBER_WORDS
    from rill.eval.adherence import DigitJudge, digit_adherence
    from rill.inference.generate import generate
    from rill.model import bundled_model, load_model

    model = load_model(args.model) if args.model.endswith(".safetensors") else bundled_model(args.model)
    # round i: the ten digits with template i % 10 and starting noise seed + i (only the prompt differs)
    rounds = [
        [CAPTION_TEMPLATES[i % len(CAPTION_TEMPLATES)].format(n=d, w=NUMBER_WORDS[d]) for d in range(10)]
        for i in range(args.n)
    ]
    prompts = [pr for r in rounds for pr in r]
    t0 = time.perf_counter()
    images = torch.cat(
        [
            generate(
                model,
                r,
                n=1,
                nfe=args.nfe,
                sampler=args.sampler,
                guidance=args.guidance,
                seed=args.seed + i,
                device="cpu",
            )
            for i, r in enumerate(rounds)
        ]
    )
    seconds = time.perf_counter() - t0
    judge = DigitJudge()
    result = digit_adherence(images, prompts, judge)
    print(
        json.dumps(
            {
                "model": args.model,
                "images": len(prompts),
                "guidance": args.guidance,
                "nfe": args.nfe,
                "sampler": args.sampler,
                "accuracy": result["accuracy"],
                "per_digit": result["per_digit"],
                "judge_accuracy_on_real_train_digits": judge.accuracy_on_real("train"),
                "generation_seconds": round(seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
