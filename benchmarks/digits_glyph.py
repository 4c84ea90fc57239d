"""A glyph the digits model never saw — a handwritten plus sign — drawn the way scikit-learn's digits were
made, and a judge that can tell it from the ten digits and from near misses.

    python benchmarks/digits_glyph.py --write DIR [--n 20] [--prior 60]   # a training folder (folder:DIR)

The UCI / scikit-learn digits are 32×32 binary pen bitmaps counted in 4×4 blocks (values 0..16 per pixel,
background 0 = −1 in rill). `draw_glyph` does the same: two strokes as thick as the digits' pen (4.5–7 px
at 32×32) with random arm lengths, tilt, crossing point and shift, rasterised binary at 32×32 and
block-counted to 8×8. Each image set comes from its own random stream ("train", "judge", "test"), and the
judge's and test sets drop any image equal to a training image: the judge never sees the 20 training images.

GlyphJudge: an RBF-SVM (like rill.eval.adherence.DigitJudge) on the 64 pixels, fitted on the 359 held-out
real digits (classes 0..9), 200 judge-set plus signs (PLUS) and 200 near misses (OTHER: a minus, a T, an X, a
scribble), so that a bar with a smudge or any non-digit blob is not counted as a plus. Its validity is
reported next to every score: recall on 200 separate test pluses, false "plus" on 200 test near misses and
on the 1438 real train digits.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

PLUS, OTHER = 10, 11  # the judge's classes for the new glyph and for its near misses
OTHER_KINDS = ("minus", "tee", "x", "scribble")
TRAIN_CAPTIONS = ("a handwritten plus sign", "a plus sign", "the plus symbol, handwritten",
                  "a drawing of a plus sign")  # fmt: skip
HELDOUT_CAPTION = "a hand-drawn plus"  # a phrasing not among the training captions


def _stroke(draw, a: tuple[float, float], b: tuple[float, float], width: float) -> None:
    """A pen stroke from a to b: a thick line with round ends (32×32 canvas, binary)."""
    draw.line([a, b], fill=1, width=max(1, round(width)))
    r = width / 2
    for x, y in (a, b):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=1)


def draw_glyph(rng: random.Random, kind: str = "plus") -> np.ndarray:
    """One handwritten glyph, (8, 8) uint8 in 0..16 (4×4 block counts of a 32×32 binary bitmap). kind:
    "plus", or one of OTHER_KINDS, the near misses the judge must not call a plus: "minus" (the horizontal
    stroke only), "tee" (one arm missing), "x" (a plus turned 45°), "scribble" (1-3 random strokes)."""
    from PIL import Image, ImageDraw

    img = Image.new("1", (32, 32), 0)
    d = ImageDraw.Draw(img)
    cx, cy = 15.5 + rng.uniform(-2.5, 2.5), 15.5 + rng.uniform(-2.5, 2.5)
    width = rng.uniform(4.5, 7.0)
    if kind == "scribble":
        for _ in range(rng.randint(1, 3)):
            a, b = (rng.uniform(3, 29), rng.uniform(3, 29)), (rng.uniform(3, 29), rng.uniform(3, 29))
            _stroke(d, a, b, width)
        return _blocks(img)
    turn = math.radians(45) if kind == "x" else 0.0
    tilt = turn + math.radians(rng.uniform(-12, 12))
    # horizontal stroke: half-lengths left / right, crossing point a little off-centre
    left, right = rng.uniform(8, 13), rng.uniform(8, 13)
    up, down = rng.uniform(9, 14), rng.uniform(9, 14)
    if kind == "tee":  # one of the four arms is missing
        missing = rng.choice(("left", "right", "up", "down"))
        left, right, up, down = (0.0 if m == missing else v for m, v in
                                 zip(("left", "right", "up", "down"), (left, right, up, down)))  # fmt: skip
    dx, dy = math.cos(tilt), math.sin(tilt)
    hy = cy + rng.uniform(-2, 2)
    _stroke(d, (cx - left * dx, hy - left * dy), (cx + right * dx, hy + right * dy), width)
    lean = turn + math.radians(rng.uniform(-12, 12))
    vx = cx + rng.uniform(-2, 2)
    ex, ey = -math.sin(lean), math.cos(lean)
    if kind != "minus":
        w = width * rng.uniform(0.8, 1.2)
        _stroke(d, (vx - up * ex, cy - up * ey), (vx + down * ex, cy + down * ey), w)
    return _blocks(img)


def _blocks(img) -> np.ndarray:
    bits = np.asarray(img, dtype=np.uint8)  # (32, 32) 0/1
    return bits.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.uint8)  # (8, 8) 0..16


def glyph_set(stream: str, n: int, exclude: np.ndarray | None = None, kinds: tuple[str, ...] = ("plus",)
              ) -> np.ndarray:  # fmt: skip
    """n distinct glyphs (kinds in turn) from the random stream `stream`, none equal to one of `exclude`."""
    rng = random.Random(f"plus:{stream}")
    seen = {e.tobytes() for e in exclude} if exclude is not None else set()
    out: list[np.ndarray] = []
    while len(out) < n:
        g = draw_glyph(rng, kinds[len(out) % len(kinds)])
        if g.tobytes() not in seen:
            seen.add(g.tobytes())
            out.append(g)
    return np.stack(out)


def to_tensor(glyphs: np.ndarray) -> torch.Tensor:
    """(N, 8, 8) counts 0..16 -> (N, 1, 8, 8) in [-1, 1], as rill.data.digits maps them."""
    return torch.from_numpy(glyphs.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)


def _save_grey(images: torch.Tensor, folder: Path, names: list[str]) -> None:
    """(N, 1, 8, 8) in [-1, 1] -> 8×8 grey PNGs (v -> round((v + 1) · 127.5))."""
    from PIL import Image

    pixels = ((images[:, 0].clamp(-1, 1).double() + 1) * 127.5).round().to(torch.uint8).numpy()
    for a, name in zip(pixels, names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a, mode="L").save(folder / name)


def write_folder(folder: Path, n: int = 20, prior: int = 0, model=None, seed: int = 3000) -> list[str]:
    """The n training plus signs as 8×8 grey PNGs + metadata.jsonl (a folder:PATH dataset); returns the
    captions. prior > 0 adds that many digits drawn by `model` itself (the bundled digits model by default)
    for digit captions, under prior/: the prior preservation of DreamBooth (Ruiz et al. 2023). They hold
    nothing the base model does not know already, and keep the adapter from turning every prompt into a
    plus."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"plus-{i:02d}.png" for i in range(n)]
    captions = [TRAIN_CAPTIONS[i % len(TRAIN_CAPTIONS)] for i in range(n)]
    _save_grey(to_tensor(glyph_set("train", n)), folder, names)
    if prior:
        from rill.data.digits import CAPTION_TEMPLATES, NUMBER_WORDS
        from rill.inference.generate import generate
        from rill.model.files import bundled_model

        model = model if model is not None else bundled_model("digits")
        templates = [CAPTION_TEMPLATES[(i // 10) % len(CAPTION_TEMPLATES)] for i in range(prior)]
        digit_caps = [t.format(n=i % 10, w=NUMBER_WORDS[i % 10]) for i, t in enumerate(templates)]
        images = generate(model, digit_caps, n=1, nfe=16, guidance=3.0, seed=seed)
        prior_names = [f"prior/digit-{i:02d}.png" for i in range(prior)]
        _save_grey(images, folder, prior_names)
        names, captions = names + prior_names, captions + digit_caps
    rows = [json.dumps({"file_name": f, "text": c}) for f, c in zip(names, captions)]
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return captions


class GlyphJudge:
    """Reads an 8×8 image as a digit 0..9, PLUS or OTHER; see the module docstring."""

    def __init__(self, n_fit: int = 200, C: float = 5.0) -> None:
        from sklearn.svm import SVC

        from rill.data import load_dataset

        train = glyph_set("train", 20)
        digits = load_dataset("digits", split="heldout")
        plus, other = (
            glyph_set("judge", n_fit, exclude=train),
            glyph_set("judge-other", n_fit, kinds=OTHER_KINDS),
        )
        x = torch.cat([digits.images.float(), to_tensor(plus), to_tensor(other)]).reshape(-1, 64).numpy()
        y = np.concatenate([np.asarray(digits.labels), np.full(n_fit, PLUS), np.full(n_fit, OTHER)])
        self.svm = SVC(C=C, gamma="scale").fit(x, y)
        self.test_plus = glyph_set("test", 200, exclude=np.concatenate([train, plus]))
        self.test_other = glyph_set("test-other", 200, exclude=other, kinds=OTHER_KINDS)

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """(N, 1, 8, 8) in [-1, 1] -> (N,) classes 0..9, PLUS or OTHER."""
        return self.svm.predict(images.detach().float().cpu().clamp(-1, 1).reshape(len(images), -1).numpy())

    def validity(self) -> dict[str, float]:
        """Recall on the test pluses, false "plus" on the test near misses and the real train digits (never
        fitted on), and the digit accuracy on those real digits."""
        from rill.data import load_dataset

        real = load_dataset("digits", split="train")
        got = self.predict(real.images.float())
        return {"plus_recall": float((self.predict(to_tensor(self.test_plus)) == PLUS).mean()),
                "other_false_plus": float((self.predict(to_tensor(self.test_other)) == PLUS).mean()),
                "real_false_plus": float((got == PLUS).mean()),
                "real_digit_acc": float((got == np.asarray(real.labels)).mean()),
                "real_n": len(real)}  # fmt: skip


HELDOUT_CAPTIONS = ("a hand-drawn plus", "the plus sign", "a plus symbol", "handwritten plus")
NFE, GUIDANCE = 16, 3.0


def _train(model, folder: Path, out: Path, args, reuse: bool):
    """finetune_lora on folder (or the adapter already at `out` with --reuse); (group, wall s, CPU s)."""
    import time

    from rill.inference.adapters import load_lora
    from rill.model.files import save_group
    from rill.train.finetune import FinetuneConfig, finetune_lora

    if reuse and out.is_file():  # the file's header holds the run's facts
        group = load_lora(out, model)
        return group, group.meta["wall_s"], group.meta.get("cpu_s", float("nan"))
    cfg = FinetuneConfig(
        data=f"folder:{folder}", steps=args.glyph_steps, batch_size=16, lr=args.glyph_lr, seed=0
    )
    t0, c0 = time.perf_counter(), time.process_time()
    group = finetune_lora(model, cfg, rank=args.rank, alpha=args.alpha, targets=args.glyph_targets)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    group.meta["cpu_s"] = round(cpu, 1)
    save_group(group, out)
    return group, wall, cpu


def glyph_section(args, runs: Path, img_dir: Path) -> list[str]:
    """Teach the bundled digits model a plus sign: two LoRAs (the 20 plus signs alone; the same 20 +
    base-model digits for prior preservation), read by GlyphJudge before/after; digit prompts by
    DigitJudge."""
    from rill.data.digits import CAPTION_TEMPLATES, NUMBER_WORDS
    from rill.eval.adherence import DigitJudge, digit_adherence
    from rill.inference.adapters import loras
    from rill.inference.generate import generate
    from rill.model.files import bundled_model
    from rill.viz.images import save_grid

    model = bundled_model("digits")
    only, prior = runs / "plus-data", runs / "plus-prior-data"
    write_folder(only)
    write_folder(prior, prior=args.glyph_prior, model=model)
    trained = {"only": _train(model, only, runs / "plus.safetensors", args, args.reuse),
               "prior": _train(model, prior, runs / "plus-prior.safetensors", args, args.reuse)}  # fmt: skip
    judge, digit_judge = GlyphJudge(), DigitJudge()
    valid = judge.validity()
    per = args.glyph_per_prompt
    digit_prompts = [
        CAPTION_TEMPLATES[i % 10].format(n=d, w=NUMBER_WORDS[d]) for i in range(10) for d in range(10)
    ]
    twice = [p for p in digit_prompts for _ in range(2)]
    train_px = to_tensor(glyph_set("train", 20)).reshape(20, -1)

    def measure(adapters) -> dict:
        with loras(model, adapters):
            a = generate(model, list(TRAIN_CAPTIONS), n=per, nfe=NFE, guidance=GUIDANCE, seed=1000)
            b = generate(model, list(HELDOUT_CAPTIONS), n=per, nfe=NFE, guidance=GUIDANCE, seed=1000)
            d = generate(model, digit_prompts, n=2, nfe=NFE, guidance=GUIDANCE, seed=2000)
        pa, pb, pd = judge.predict(a), judge.predict(b), judge.predict(d)
        both = np.concatenate([pa, pb])
        plus_imgs = torch.cat([a, b])[both == PLUS].reshape(-1, 64)
        # nearest training plus, RMS pixel distance in [-1, 1]: is the adapter copying its 20 images?
        near = torch.cdist(plus_imgs, train_px).min(1).values / 8 if len(plus_imgs) else torch.empty(0)
        return {"seen": float((pa == PLUS).mean()), "new": float((pb == PLUS).mean()),
                "as_digit": float((both < PLUS).mean()), "as_other": float((both == OTHER).mean()),
                "digits": digit_adherence(d, twice, digit_judge)["accuracy"],
                "digit_as_plus": float((pd == PLUS).mean()),
                "near": float(near.median()) if len(near) else None, "images": (a, b, d)}  # fmt: skip

    rows = [("base model", measure([]))]
    for key, label in (
        ("only", "20 plus signs"),
        ("prior", f"20 plus signs + {args.glyph_prior} prior digits"),
    ):
        for scale in (0.75, 1.0):
            rows.append((f"+ LoRA ({label}), scale {scale:g}", measure([(trained[key][0], scale)])))
    test_near = float(
        (torch.cdist(to_tensor(judge.test_plus).reshape(200, -1), train_px).min(1).values / 8).median()
    )

    img_dir.mkdir(parents=True, exist_ok=True)
    k = 10
    spread = torch.tensor([(i % 4) * per + i // 4 for i in range(k)])  # the 4 captions in turn
    pictures = [to_tensor(glyph_set("train", 20))[:k]]
    pictures += [r["images"][i][spread] for r in (rows[0][1], rows[2][1], rows[4][1]) for i in (0, 1)]
    pictures += [rows[2][1]["images"][2][0:20:2], rows[4][1]["images"][2][0:20:2]]  # digits 0..9
    save_grid(torch.cat(pictures), img_dir / "lora-plus.png", nrow=k, scale=4)

    g_only, wall_only, cpu_only = trained["only"]
    g_prior, wall_prior, cpu_prior = trained["prior"]
    n_params = sum(v.numel() for v in g_prior.tensors.values())
    caps, new_caps = ", ".join(map(repr, TRAIN_CAPTIONS)), ", ".join(map(repr, HELDOUT_CAPTIONS))
    v = valid
    lines = [
        '## LoRA: teaching the digits model a new glyph, "a handwritten plus sign"',
        "",
        f"`python benchmarks/adapters.py {args.command}`",
        "",
        "20 plus signs drawn like scikit-learn's digits (benchmarks/digits_glyph.py: 32×32 pen bitmaps "
        "counted in 4×4 blocks; random stroke thickness, arm lengths, tilt, shift), 8×8 grey PNGs in a "
        f"folder:PATH (read at the model's 1 channel), captions {caps}. Two adapters, `finetune_lora` rank "
        f"{args.rank}, alpha {args.alpha}, targets `{args.glyph_targets}` ({n_params:,} parameters), "
        f"{args.glyph_steps} steps × batch 16, lr {args.glyph_lr}, seed 0, {torch.get_num_threads()} "
        f"thread(s) ({platform.processor() or platform.machine()}):",
        f"- **20 plus signs only**: {wall_only:.0f} s wall, {cpu_only:.0f} s CPU;",
        f"- **20 plus signs + {args.glyph_prior} prior digits** (DreamBooth-style prior preservation: "
        f"digits the base model itself drew for digit captions, {NFE} NFE, guidance {GUIDANCE}, seed 3000; "
        f"no other new image): {wall_prior:.0f} s wall, {cpu_prior:.0f} s CPU.",
        "",
        "Judge: GlyphJudge, an RBF-SVM on the 64 pixels fitted on the 359 held-out real digits + 200 plus "
        "signs + 200 near misses (minus, T, X, scribble), all from random streams other than the training "
        f"one (never the 20 training images). It reads {v['plus_recall']:.1%} of 200 fresh test plus signs "
        f"as a plus, calls {v['other_false_plus']:.1%} of 200 test near misses and "
        f"{v['real_false_plus']:.1%} of the {v['real_n']} real train digits a plus, and reads those digits "
        f"right {v['real_digit_acc']:.1%} of the time.",
        f"Prompts: the 4 training captions × {per} seeds and 4 new phrasings ({new_caps}) × {per} seeds, "
        "from seed 1000; digit prompts: the 10 caption templates × 10 digits × 2 seeds from 2000, read by "
        f"rill.eval.adherence.DigitJudge. {NFE} NFE, guidance {GUIDANCE}.",
        "",
        "| model | plus (training captions) | plus (new phrasings) | read as a digit | near miss | "
        "digit prompts: right digit | digit prompts: read as plus | nearest training plus (RMS) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        near = f"{r['near']:.3f}" if r["near"] is not None else "–"
        cells = [f"{r[k]:.0%}" for k in ("seen", "new", "as_digit", "as_other")]
        cells += [f"{r['digits']:.1%}", f"{r['digit_as_plus']:.1%}", near]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Nearest training plus: median RMS pixel distance (pixels in [−1, 1]) from each generated image read "
        "as a plus to the closest of the 20 training images; fresh test plus signs from the same drawing "
        f"script sit at {test_near:.3f}, an exact copy at 0.",
        "",
        "![rows: 10 training plus signs; base model (training captions, new phrasings); LoRA on the 20 "
        "alone (the same two); LoRA with prior digits (the same two); digits 0-9 with the LoRA alone, with "
        "the prior LoRA](../../docs/img/lora-plus.png)",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write", metavar="DIR", required=True, help="write the training folder here")
    p.add_argument("--n", type=int, default=20, help="plus signs (default 20)")
    p.add_argument("--prior", type=int, default=0, help="add this many digits drawn by the base model")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    captions = write_folder(Path(args.write), args.n, args.prior)
    print(f"wrote {args.n} plus signs + {args.prior} base-model digits (8×8 grey PNG) + metadata.jsonl "
          f"({len(captions)} captions) to {args.write}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
