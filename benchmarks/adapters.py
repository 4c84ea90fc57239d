"""Adapters on the bundled models: a LoRA that teaches the shapes model a colour it never saw ("pink"), a
ControlNet-style layout branch (before/after tables by the programmatic shapes checker), and a LoRA that
teaches the digits model a new glyph, a plus sign (benchmarks/digits_glyph.py: data, judge, table).

    python benchmarks/adapters.py [--lora-steps 300] [--control-steps 800] [--skip-lora] [--skip-control]
                                  [--skip-glyph] [--glyph-steps 1000]
    python benchmarks/adapters.py --write-pink DIR     # only the 20 pink training images (folder:DIR)

Each run rewrites the sections it measured in benchmarks/results/adapters.md and keeps the others.

LoRA: 20 pink scenes are drawn with the dataset's own renderer (a scene drawn in white, then recoloured to
PINK: the renderer's box-downsampled edges are linear in the fill colour, so this equals drawing in pink; pink
is added here only, never to the dataset's vocabulary) into a folder:PATH dataset; `finetune_lora` trains on
it (one thread); base and base+LoRA then draw held-out prompts (shape/size/position combinations not among
the 20 training captions) with held-out seeds, scored by detect_objects with PINK added to its palette.
The same LoRA is also scored on ordinary prompts (check_images), to show what it costs the seen colours.
Control: see control_section. Writes benchmarks/results/adapters.md and pictures under docs/img/.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "adapters.md"
IMG = ROOT / "docs" / "img"
RUNS = ROOT / "runs" / "adapters"
PINK = (250, 120, 190)
NFE, GUIDANCE = 16, 3.0


# --- pink data ----------------------------------------------------------------------------------------------
def pink_scene(rng: random.Random) -> list[dict]:
    from rill.data import shapes as sh

    obj = {"shape": rng.choice(sh.SHAPES), "colour": "white", "size": rng.choice(tuple(sh.SIZES)),
           "position": rng.choice(tuple(sh.POSITIONS))}  # fmt: skip
    return sh.place_scene([obj], rng)


def render_pink(scene: list[dict]) -> np.ndarray:
    """The scene drawn by rill.data.shapes.render_scene in white, recoloured to PINK (coverage-linear)."""
    from rill.data import shapes as sh

    white = sh.render_scene(scene).astype(np.float64)  # (H, W, 3)
    bg, fill = np.asarray(sh.BACKGROUND, float), np.asarray(sh.COLOURS["white"], float)
    alpha = ((white - bg) / (fill - bg)).mean(-1, keepdims=True).clip(0, 1)  # coverage of each pixel
    return np.rint(bg + alpha * (np.asarray(PINK, float) - bg)).astype(np.uint8)


def pink_caption(scene: list[dict]) -> str:
    from rill.data import shapes as sh

    return sh.scene_caption([{**scene[0], "colour": "pink"}])


def write_pink_folder(folder: Path, n: int = 20, seed: int = 0) -> list[str]:
    """n pink scenes as PNGs + metadata.jsonl (a folder:PATH dataset); returns their captions."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng, captions, rows = random.Random(f"pink:{seed}"), [], []
    while len(captions) < n:
        scene = pink_scene(rng)
        cap = pink_caption(scene)
        if cap in captions:  # 20 distinct captions
            continue
        name = f"pink-{len(captions):02d}.png"
        Image.fromarray(render_pink(scene)).save(folder / name)
        captions.append(cap)
        rows.append(json.dumps({"file_name": name, "text": cap}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return captions


def heldout_pink_prompts(train: list[str], count: int) -> list[str]:
    from rill.data import shapes as sh

    every = [f"a {z} pink {s} in the {p}" for s in sh.SHAPES for z in sh.SIZES for p in sh.POSITIONS]
    fresh = [c for c in every if c not in set(train)]
    random.Random("pink-heldout").shuffle(fresh)
    return fresh[:count]


def score_pink(images: torch.Tensor, prompts: list[str]) -> dict[str, float]:
    """Fractions of images whose largest object is pink / has the right shape, size, position / all four."""
    from rill.data import shapes as sh
    from rill.eval.shapes_check import detect_objects

    palette = {**sh.COLOURS, "pink": PINK}
    hits = {k: [] for k in ("colour", "shape", "size", "position", "correct")}
    for img, prompt in zip(images, prompts):
        want = sh.parse_caption(prompt.replace(" pink ", " red "))[0]
        found = detect_objects(img, colours=palette)
        got = found[0] if found else None
        row = {k: bool(got) and got[k] == want[k] for k in ("shape", "size", "position")}
        row["colour"] = bool(got) and got["colour"] == "pink"
        row["correct"] = all(row.values()) and len(found) == 1
        for k, v in row.items():
            hits[k].append(v)
    return {k: float(np.mean(v)) for k, v in hits.items()}


def draw(model, prompts: list[str], seed: int, n: int = 2) -> torch.Tensor:
    from rill.inference.generate import generate

    return generate(model, prompts, n=n, nfe=NFE, guidance=GUIDANCE, seed=seed)


def lora_section(args: argparse.Namespace, model) -> list[str]:
    from rill.eval.shapes_check import check_images
    from rill.inference.adapters import loras
    from rill.model.files import save_group
    from rill.train.finetune import FinetuneConfig, finetune_lora
    from rill.viz.images import save_grid

    folder = RUNS / "pink-data"
    train = write_pink_folder(folder, n=20)
    cfg = FinetuneConfig(
        data=f"folder:{folder}", steps=args.lora_steps, batch_size=16, lr=args.lora_lr, seed=0
    )
    adapter = RUNS / "pink.safetensors"
    if args.reuse and adapter.is_file():  # re-score a trained adapter (its header holds the run's facts)
        from rill.inference.adapters import load_lora

        group = load_lora(adapter, model)
        wall, cpu = group.meta["wall_s"], group.meta.get("cpu_s", float("nan"))
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        group = finetune_lora(model, cfg, rank=args.rank, alpha=args.alpha, targets=args.targets)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        group.meta["cpu_s"] = round(cpu, 1)
        save_group(group, adapter)
    print(f"LoRA: {wall:.0f} s wall, {cpu:.0f} s CPU -> {adapter} ({adapter.stat().st_size / 1e3:.0f} kB)")

    prompts = heldout_pink_prompts(train, args.prompts)
    seeds = 1000
    n = args.per_prompt
    wanted = [p for p in prompts for _ in range(n)]
    base = draw(model, prompts, seeds, n)
    with loras(model, [adapter]):
        tuned = draw(model, prompts, seeds, n)
        half = None
        with loras(model, [(group, -0.5)]):  # net scale 0.5: two adapters stacked
            half = draw(model, prompts, seeds, n)
    rows = [("base model", score_pink(base, wanted)), ("+ pink LoRA, scale 0.5", score_pink(half, wanted)),
            ("+ pink LoRA, scale 1", score_pink(tuned, wanted))]  # fmt: skip

    # what it costs the colours the model knows: ordinary captions (seen pairs), same seeds
    from rill.data import ShapesDataset

    seen = [c for c in ShapesDataset(n=400, seed=7).captions if c.count(" a ") == 0][: args.prompts]
    seen_base = check_images(draw(model, seen, seeds, n), [c for c in seen for _ in range(n)])["all"][
        "correct"
    ]
    with loras(model, [adapter]):
        got = check_images(draw(model, seen, seeds, n), [c for c in seen for _ in range(n)])
    seen_tuned = got["all"]["correct"]

    IMG.mkdir(parents=True, exist_ok=True)
    k = min(8, len(prompts))
    pick = torch.arange(k) * n  # first seed of the first k prompts
    from PIL import Image

    files = sorted(folder.glob("*.png"))[:k]
    train_imgs = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files])
    train_imgs = train_imgs.float() / 127.5 - 1
    save_grid(torch.cat([train_imgs, base[pick], tuned[pick]]), IMG / "lora-pink.png", nrow=k, scale=2)

    lines = [
        '## LoRA: teaching the shapes model "pink"',
        "",
        f"20 pink training images (rendered by rill.data.shapes, folder:PATH), `finetune_lora` rank "
        f"{args.rank}, alpha {args.alpha}, targets `{args.targets}`, {args.lora_steps} steps × batch 16, "
        f"lr {args.lora_lr}, "
        f"seed 0: **{wall:.0f} s wall, {cpu:.0f} s CPU** on {torch.get_num_threads()} thread(s) "
        f"({platform.processor() or platform.machine()}); adapter {adapter.stat().st_size / 1e3:.0f} kB, "
        f"{sum(v.numel() for v in group.tensors.values()):,} parameters.",
        f"Held out: {len(prompts)} pink prompts whose (shape, size, position) is not among the training "
        f"captions × {n} seeds from {seeds}; {NFE} NFE, guidance {GUIDANCE}. Scored by detect_objects with "
        "pink added to its palette (largest object).",
        "",
        "| model | pink | shape | size | position | all four (one object) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['colour']:.0%} | {r['shape']:.0%} | {r['size']:.0%} | "
                     f"{r['position']:.0%} | {r['correct']:.0%} |")  # fmt: skip
    lines += [
        "",
        f"Seen colours with the adapter merged (check_images, {len(seen)} one-shape dataset captions × {n} "
        f"seeds, all attributes right): base {seen_base:.0%}, with the pink LoRA {seen_tuned:.0%}.",
        "",
        "![training images (top), base (middle), with the LoRA (bottom)](../../docs/img/lora-pink.png)",
        "",
    ]
    return lines


# --- control ------------------------------------------------------------------------------------------------
def boxes_iou(found: list[dict], layout: torch.Tensor) -> float:
    """Pixel IoU of the union of the detected objects' boxes (centre ± extent) with the layout map."""
    from rill.adapters.control import layout_map

    drawn = layout_map(found, layout.shape[-1]) if found else torch.zeros_like(layout)
    inter, union = (drawn * layout).sum(), torch.maximum(drawn, layout).sum()
    return float(inter / union) if union > 0 else 1.0


def layout_scores(images: torch.Tensor, layouts: torch.Tensor, captions: list[str]) -> dict[str, float]:
    from rill.eval.shapes_check import check_images, detect_objects

    ious = [boxes_iou(detect_objects(img), lay) for img, lay in zip(images, layouts)]
    return {"iou": float(np.mean(ious)), "correct": check_images(images, captions)["all"]["correct"]}


def control_section(args: argparse.Namespace, model) -> list[str]:
    from rill.adapters.control import ControlBranch, layout_map
    from rill.data import ShapesDataset
    from rill.inference.adapters import ControlledModel, controlled
    from rill.inference.generate import generate
    from rill.model.files import save_group
    from rill.train.finetune import FinetuneConfig, finetune_control
    from rill.viz.images import save_grid

    held = ShapesDataset(n=args.prompts, seed=4242)  # other scenes than the training ones (seed 0)
    captions = held.captions
    layouts = torch.stack([layout_map(held.scene(i), 32) for i in range(len(held))])  # (P, 1, 32, 32)
    seed = 2000

    def run(m) -> torch.Tensor:
        return generate(m, captions, n=1, nfe=NFE, guidance=GUIDANCE, seed=seed)

    curve: list[tuple[int, float, float]] = []

    def measure(step: int, branch) -> None:
        branch.eval()
        got = layout_scores(run(ControlledModel(model, branch, layouts)), layouts, captions)
        curve.append((step, got["iou"], got["correct"]))
        print(f"  probe step {step}: IoU {got['iou']:.3f}, prompt adherence {got['correct']:.0%}")

    path = RUNS / "layout.safetensors"
    cfg = FinetuneConfig(data="shapes", limit=args.control_items, steps=args.control_steps,
                         batch_size=args.control_batch,
                         lr=args.control_lr, seed=0, log_every=args.probe_every)  # fmt: skip
    if args.reuse and path.is_file():
        from rill.model.files import load_group

        group = load_group(path, model)
        curve = [tuple(r) for r in group.meta.get("curve", [])]
        wall, cpu = group.meta["wall_s"], group.meta.get("cpu_s", float("nan"))
    else:
        measure(0, ControlBranch(model.net))  # fresh: zero convolutions, the base model's images
        t0, c0 = time.perf_counter(), time.process_time()
        group = finetune_control(
            model, cfg, kind="layout", on_log=lambda step, net: measure(step, net.branch)
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        group.meta.update(cpu_s=round(cpu, 1), curve=curve)
        save_group(group, path)
    base = run(model)
    rows = [("base model (prompt only)", layout_scores(base, layouts, captions))]
    outs = {}
    for scale in (0.0, 0.5, 1.0, 1.5):
        outs[scale] = run(controlled(model, group, layouts, scale))
        rows.append((f"+ layout control, scale {scale:g}", layout_scores(outs[scale], layouts, captions)))
    assert torch.equal(outs[0.0], base), "control scale 0 must give the base model's images"

    IMG.mkdir(parents=True, exist_ok=True)
    k = min(8, len(captions))
    save_grid(torch.cat([layouts[:k].expand(-1, 3, -1, -1) * 2 - 1, base[:k], outs[1.0][:k]]),
              IMG / "control-layout.png", nrow=k, scale=2)  # fmt: skip
    final = curve[-1][1] if curve else float("nan")
    start = curve[0][1] if curve else float("nan")
    half = next((s for s, iou, _ in curve if iou >= start + 0.5 * (final - start)), None)
    lines = [
        "## ControlNet-style layout control",
        "",
        f'Branch trained by `finetune_control(kind="layout")` on {args.control_items} shapes scenes (train '
        f"split, seed 0; the control map = the boxes of the objects the renderer drew), {args.control_steps} "
        f"steps × batch {args.control_batch}, lr {args.control_lr}: **{wall:.0f} s wall, {cpu:.0f} s CPU** "
        f"on {torch.get_num_threads()} thread(s); {sum(v.numel() for v in group.tensors.values()):,} "
        f"parameters. Held out: {len(captions)} scenes of another seed (their captions and layouts), seed "
        f"{seed}, {NFE} NFE, guidance {GUIDANCE}. IoU = pixel IoU of the union of the detected objects' "
        "boxes (detect_objects) with the layout; adherence = check_images (caption fully right).",
        "",
        "| model | layout IoU | prompt adherence |",
        "|---|---|---|",
        *[f"| {name} | {r['iou']:.3f} | {r['correct']:.0%} |" for name, r in rows],
        "",
        "Scale 0 reproduces the base model's images bit for bit (checked by this script).",
        "",
        "Convergence (the same probe during training):",
        "",
        "| step | layout IoU | prompt adherence |",
        "|---|---|---|",
        *[f"| {s} | {iou:.3f} | {c:.0%} |" for s, iou, c in curve],
        "",
        f"Half of the final IoU gain is reached by step {half}.",
        "",
        "![layout maps (top), base (middle), with control (bottom)](../../docs/img/control-layout.png)",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lora-steps", type=int, default=300)
    p.add_argument("--lora-lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--alpha", type=float, default=4.0)
    p.add_argument("--targets", default="attention")
    p.add_argument("--prompts", type=int, default=24, help="held-out prompts per table")
    p.add_argument("--per-prompt", type=int, default=2, help="seeds per prompt")
    p.add_argument("--control-steps", type=int, default=500)
    p.add_argument("--control-lr", type=float, default=5e-4)
    p.add_argument("--control-batch", type=int, default=8)
    p.add_argument("--control-items", type=int, default=4000, help="shapes scenes to train the branch on")
    p.add_argument("--probe-every", type=int, default=100, help="IoU probe every N training steps")
    p.add_argument("--skip-lora", action="store_true")
    p.add_argument("--skip-control", action="store_true")
    p.add_argument("--skip-glyph", action="store_true", help="skip the digits plus-sign LoRA")
    p.add_argument("--glyph-steps", type=int, default=1000)
    p.add_argument("--glyph-lr", type=float, default=2e-3)
    p.add_argument("--glyph-targets", default="all")
    p.add_argument("--glyph-prior", type=int, default=60, help="base-model digits for prior preservation")
    p.add_argument("--glyph-per-prompt", type=int, default=25, help="seeds per glyph prompt")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="score the adapters already in runs/adapters/")
    p.add_argument("--write-pink", metavar="DIR", help="only write the 20 pink training images (folder:DIR)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.write_pink:
        captions = write_pink_folder(Path(args.write_pink))
        print(f"wrote {len(captions)} pink scenes + metadata.jsonl to {args.write_pink}")
        return 0
    from rill.model.files import bundled_model

    RUNS.mkdir(parents=True, exist_ok=True)
    args.command = " ".join(argv if argv is not None else sys.argv[1:])
    command = f"`python benchmarks/adapters.py {args.command}`"
    new: list[list[str]] = []
    if not (args.skip_lora and args.skip_control):
        model = bundled_model("shapes")
        if not args.skip_lora:
            new.append(_with_command(lora_section(args, model), command))
        if not args.skip_control:
            new.append(_with_command(control_section(args, model), command))
    if not args.skip_glyph:
        sys.path.insert(0, str(ROOT))
        from benchmarks.digits_glyph import glyph_section

        new.append(glyph_section(args, RUNS, IMG))
    sections = _sections(RESULTS.read_text() if RESULTS.is_file() else "")
    sections.update({lines[0]: "\n".join(lines) for lines in new})
    text = "\n".join([TITLE, "", *sections.values()])
    print("\n\n".join("\n".join(lines) for lines in new))
    RESULTS.write_text(text)
    return 0


TITLE = "# Adapters (LoRA, ControlNet-style control) on the bundled shapes and digits models"


def _with_command(lines: list[str], command: str) -> list[str]:
    """A section's lines with the command that measured it under its title."""
    return [lines[0], "", command, *lines[1:]]


def _sections(text: str) -> dict[str, str]:
    """The "## " sections of a results file, by title line, in order (what a run does not measure stays)."""
    out: dict[str, str] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line
            out[title] = line
        elif title is not None:
            out[title] += "\n" + line
    return {k: v.rstrip("\n") + "\n" for k, v in out.items()}


if __name__ == "__main__":
    sys.exit(main())
