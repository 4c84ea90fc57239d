"""The bundled emoji model's speed budget (issue 14): first PNG from a cold process, and batched images/s.

    python -m benchmarks.emoji_speed [--runs 3] [--batch 64] [--no-write]

1. `python -m rill generate "a cat face"` (the emoji model is chosen from the prompt; -n 4, 16 NFE, guidance
   the model's), a fresh process per run into an empty folder: wall seconds from process start to the first
   PNG on disk (polled every 5 ms), after one untimed warm-up run (warm OS file cache). Budget: < 5 s.
2. One process, the model loaded once: `rill.inference.generate` of --batch images at 10 calls with
   guidance (CFG doubles the batch through the net: 10 calls = 10 guided evaluations), timed after one
   untimed warm-up batch, at 1 and at 2 torch threads. Budget: >= 20 images/s.
Prints a table and writes benchmarks/results/emoji_speed.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks._report import publish
from benchmarks.first_image import one_run

PROMPT = "a cat face"
RESULTS = Path(__file__).parent / "results" / "emoji_speed.md"
BUDGET_FIRST_PNG, BUDGET_IMAGES_PER_S = 5.0, 20.0


def batched(batch: int, threads: int, repeats: int = 3) -> tuple[float, float]:
    """(median images/s, guidance) of `batch` emoji at 10 calls in this process with `threads` threads."""
    import torch

    from rill.inference import generate
    from rill.inference.generate import DEFAULT_GUIDANCE, config_value
    from rill.model import bundled_model

    torch.set_num_threads(threads)
    model = bundled_model("emoji")
    guidance = float(config_value(model, "guidance") or DEFAULT_GUIDANCE)  # what `rill generate` uses
    prompts = [PROMPT, "an emoji of red apple", "an emoji of rocket", "an emoji of ghost"]
    per = batch // len(prompts)
    generate(model, prompts, n=per, nfe=10, guidance=guidance, batch_size=batch)  # warm-up (and encoder load)
    rates = []
    for r in range(repeats):
        t = time.perf_counter()
        generate(model, prompts, n=per, nfe=10, guidance=guidance, seed=1000 * (r + 1), batch_size=batch)
        rates.append(per * len(prompts) / (time.perf_counter() - t))
    return statistics.median(rates), guidance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    load_before = os.getloadavg()[0]
    one_run(env, PROMPT)[0]  # warm-up: the OS file cache
    firsts = [one_run(env, PROMPT)[0] for _ in range(args.runs)]
    rates = {t: batched(args.batch, t) for t in (1, 2)}
    load_after = os.getloadavg()[0]
    guidance = rates[1][1]
    rows = [
        (f'first PNG of `rill generate "{PROMPT}"` (median of {args.runs}; min {min(firsts):.2f} s)',
         f"{statistics.median(firsts):.2f} s", f"< {BUDGET_FIRST_PNG:.0f} s",
         statistics.median(firsts) < BUDGET_FIRST_PNG),
        *((f"images/s, batch {args.batch}, 10 calls, guidance {guidance:g}, {t} thread(s)", f"{r:.1f}",
           f">= {BUDGET_IMAGES_PER_S:.0f}", r >= BUDGET_IMAGES_PER_S) for t, (r, _) in rates.items()),
    ]  # fmt: skip
    lines = [
        "# The emoji model's speed budget",
        "",
        f"`python -m benchmarks.emoji_speed --runs {args.runs} --batch {args.batch}`; the bundled emoji model"
        " (rill/assets/emoji.safetensors), CPU.",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; 1-min "
        f"load average {load_before:.1f} before, {load_after:.1f} after (other jobs inflate wall times)",
        "",
        "| measure | value | budget | |",
        "|---|---|---|---|",
        *(f"| {m} | {v} | {b} | {'pass' if ok else 'FAIL'} |" for m, v, b, ok in rows),
        "",
    ]
    publish("\n".join(lines), RESULTS, write=not args.no_write)


if __name__ == "__main__":
    main()
