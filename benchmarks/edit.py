"""Inpainting the right half of held-out real digits with the bundled digits model, with and without RePaint
jumps at equal NFE; and the pictures in docs/editing.md.

    python -m benchmarks.edit [--count 359] [--nfe 26] [--no-write] [--no-pictures]

For each held-out digit (rill.data digits, split "heldout": never seen by the model), the right half (columns
4–7) is masked and inpainted with the prompt "a handwritten digit D", D the true digit (one batch per digit;
result j of digit D is seeded 1000·D + j). Reported per configuration (sampler, RePaint jumps × length):
- recognised: share of results the digit judge reads as D. The judge (rill.eval.adherence.DigitJudge) is
  fitted here on the "train" split, as the judged images are the held-out ones (its default fit). Reference
  rows: the real digits (the ceiling) and the left half alone with the right half blank (the floor).
- FD (right half): Fréchet distance (rill.eval.metrics) between the 32 pixels of the filled right halves and
  the real right halves of the same digits; reference: as many real "train" digits.
- seam: mean |horizontal gradient| across the mask boundary (columns 3→4) minus the mean inside the filled
  region (4→5 … 6→7): how much harder the seam is than the texture next to it (real digits: the reference).
- calls: denoiser calls spent per image (every RePaint re-denoising call included; ≤ --nfe).
Writes benchmarks/results/edit.md and, unless --no-pictures, docs/img/edit-inpaint.png and
docs/img/edit-img2img.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "edit.md"
CONFIGS = (  # (sampler, repaint jumps, jump length)
    ("auto", 0, 2),
    ("auto", 1, 2),
    ("ddpm", 0, 2),
    ("ddpm", 1, 2),
)


NOTE = """# Inpainting held-out digits: the right half

`python -m benchmarks.edit --count {count} --nfe {nfe}` (one thread, {total:.0f} s in all). {n} held-out real
digits (split "heldout", never seen by the bundled digits model), right half (columns 4–7) masked, prompt "a
handwritten digit D" with D the true digit (seed 1000·D + j), guidance = the model's ({w:g}), --nfe {nfe} for
every row. Judge: rill.eval.adherence.DigitJudge fitted on the "train" split (the judged digits are the
held-out ones). FD: Fréchet distance of the 32 right-half pixels against the real right halves of the same
digits (reference row: as many real "train" digits). Seam: mean |horizontal gradient| across the mask
boundary minus inside the filled half (real digits: the reference). Calls: denoiser calls per image, RePaint's
re-denoising included. See benchmarks/edit.py and docs/editing.md."""


def seam(images: torch.Tensor) -> str:
    """Mean |x[..., 4] − x[..., 3]| across the boundary minus the mean |horizontal gradient| inside, ± its
    standard error over the images."""
    g = (images[..., 1:] - images[..., :-1]).abs()  # (N, 1, 8, 7): g[..., j] is between columns j and j + 1
    per_image = g[..., 3].mean(dim=(1, 2)) - g[..., 4:].mean(dim=(1, 2, 3))  # (N,)
    return f"{per_image.mean():+.4f} ± {per_image.std() / len(per_image) ** 0.5:.4f}"


def right(images: torch.Tensor) -> np.ndarray:
    return images[..., 4:].reshape(len(images), -1).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=359, help="held-out digits to inpaint (default: all 359)")
    p.add_argument("--nfe", type=int, default=26, help="denoiser calls per image (default 26)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--no-pictures", action="store_true", help="do not rewrite docs/img/edit-*.png")
    p.add_argument("--pictures-only", action="store_true", help="only rewrite docs/img/edit-*.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    t_all = time.perf_counter()

    from rill.data import load_dataset
    from rill.eval.adherence import DigitJudge
    from rill.eval.metrics import frechet_distance
    from rill.inference.edit import inpaint
    from rill.model import bundled_model

    held = load_dataset("digits", split="heldout")
    order = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))[: args.count]
    real, labels = held.images[order].float(), np.asarray(held.labels)[order.numpy()]
    train = load_dataset("digits", split="train").images.float()
    floor_set = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[: len(real)]]
    judge = DigitJudge(split="train")
    model = bundled_model("digits")
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, 4:] = True
    if args.pictures_only:
        return pictures(model, real, labels, mask, args.nfe)
    blank = real.clone()
    blank[..., 4:] = -1.0

    def recognised(images) -> str:
        p = float((judge.predict(images) == labels).mean())
        return f"{p:.1%} ± {(p * (1 - p) / len(images)) ** 0.5:.1%}"

    rows = [
        ("real held-out digits (ceiling)", "", "", "", recognised(real),
         frechet_distance(right(floor_set), right(real)), seam(real), ""),
        ("left half only, right half blank (floor)", "", "", "", recognised(blank),
         frechet_distance(right(blank), right(real)), seam(blank), ""),
    ]  # fmt: skip
    for sampler, jumps, length in CONFIGS:
        t0 = time.perf_counter()
        images, calls = torch.empty_like(real), set()
        for d in range(10):  # one batch per digit: result j of digit d is seeded 1000·d + j
            idx = torch.from_numpy(np.flatnonzero(labels == d))
            r = inpaint(model, real[idx], mask, f"a handwritten digit {d}", seed=1000 * d, nfe=args.nfe,
                        sampler=sampler, repaint_jumps=jumps, jump_length=length)  # fmt: skip
            images[idx] = r.images
            calls.add(r.calls)
        acc = recognised(images)
        fd = frechet_distance(right(images), right(real))
        wall = time.perf_counter() - t0
        calls_text = "/".join(str(c) for c in sorted(calls))
        name = "inpaint" if not jumps else f"inpaint + RePaint {jumps}×{length}"
        rows.append(
            (name, sampler, str(jumps), str(length), acc, fd, seam(images), f"{calls_text} ({wall:.0f} s)")
        )
        print(f"{name:32s} {sampler:6s} recognised {acc}  FD {fd:6.3f}  seam {seam(images)}  calls "
              f"{calls_text}  {wall:.1f} s", flush=True)  # fmt: skip

    head = "| | sampler | jumps | jump length | recognised as the prompted digit | FD (right half) | seam |"
    lines = [head + " calls (time) |", "|---|---|---|---|---|---|---|---|"]
    for name, sampler, jumps, length, acc, fd, s, calls in rows:
        lines.append(f"| {name} | {sampler} | {jumps} | {length} | {acc} | {fd:.3f} | {s} | {calls} |")
    table = "\n".join(lines)
    total = time.perf_counter() - t_all
    print(table)
    print(f"total {total:.0f} s")
    if not args.no_write:
        text = NOTE.format(count=args.count, nfe=args.nfe, total=total, n=len(real), w=model.config.guidance)
        title, body = text.split("\n\n", 1)
        RESULTS.write_text(f"{title}\n\n{' '.join(body.split())}\n\n{table}\n")
        print(f"wrote {RESULTS}")
    if not args.no_pictures:
        pictures(model, real, labels, mask, args.nfe)


def pictures(model, real, labels, mask, nfe: int) -> None:
    """docs/img/edit-inpaint.png: one held-out digit of each class 0–7 (columns): the input, what the model is
    given, inpainted, inpainted with RePaint 1×2 (rows). docs/img/edit-img2img.png: a held-out 1 re-drawn as
    "a handwritten digit 7" at strengths 0 … 1 (rows), seeds 0–3 (columns)."""
    from rill.inference.edit import img2img, inpaint, strength_to_sigma
    from rill.viz.images import save_labeled_grid

    pick = [int(np.flatnonzero(labels == d)[0]) for d in range(8)]
    given = real[pick].clone()
    given[..., 4:] = 0.0  # grey: the half to fill
    rows = [real[pick], given]
    for jumps in (0, 1):
        results = [inpaint(model, real[i], mask, f"a handwritten digit {labels[i]}", seed=0, nfe=nfe,
                           repaint_jumps=jumps) for i in pick]  # fmt: skip
        rows.append(torch.cat([r.images for r in results]))
    names = [
        "input",
        "given (grey = mask)",
        f"inpaint, {nfe} calls",
        f"+ RePaint 1x2, {nfe} calls",
    ]  # ASCII: Pillow's font
    path = save_labeled_grid(torch.cat(rows), ROOT / "docs" / "img" / "edit-inpaint.png", names, scale=6)
    print(f"wrote {path}")
    src = real[int(np.flatnonzero(labels == 1)[0])]
    strengths, rows, names = (0.0, 0.4, 0.5, 0.55, 0.6, 0.7, 1.0), [], []
    for s in strengths:
        rows.append(img2img(model, src, "a handwritten digit 7", strength=s, n=4, seed=0, nfe=16).images)
        sigma = (
            "input"
            if s == 0
            else "plain generation"
            if s == 1
            else f"sigma {strength_to_sigma(s, 0.002, 80):.2g}"
        )
        names.append(f"strength {s:g} ({sigma})")
    path = save_labeled_grid(torch.cat(rows), ROOT / "docs" / "img" / "edit-img2img.png", names, scale=6)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
