"""`rill finetune --lora | --control KIND`: train an adapter on top of a frozen model, saved as one
.safetensors group file (rill.model.files.save_group) that `rill generate --lora / --control` reads."""

from __future__ import annotations

import argparse
import time

from ..common import UserError, model_path, number, set_threads

HELP = "train a LoRA adapter or a control branch on a frozen model (-> adapter .safetensors)"


def add_arguments(g: argparse.ArgumentParser) -> None:
    pos, seed, flt = number("int>=1"), number("int>=0"), number("float")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--lora", action="store_true", help="train a LoRA adapter (Hu et al. 2021, via peft)")
    what.add_argument(
        "--control", metavar="KIND", help="train a ControlNet-style branch on a control map derived from "
        "the data: layout (shapes: boxes of the objects) or edges (any image data)",
    )  # fmt: skip
    g.add_argument("--model", default="shapes", help="base model: digits | shapes | a .safetensors file")
    g.add_argument(
        "--data", required=True, help="captioned images: folder:PATH (metadata.jsonl or .txt captions) or a "
        "dataset spec (shapes, digits) with --filter",
    )  # fmt: skip
    g.add_argument("--filter", help="keep only the items whose caption contains this text")
    g.add_argument("--limit", type=pos, help="use at most this many items (after --filter)")
    g.add_argument("--rank", type=pos, default=4, help="LoRA rank r (default 4)")
    g.add_argument("--alpha", type=flt, default=4.0, help="LoRA alpha; the update is scaled alpha / r")
    g.add_argument(
        "--targets", default="attention", help="LoRA layers: attention | text | all | comma-separated "
        "module names (default attention)",
    )  # fmt: skip
    g.add_argument("--steps", type=pos, default=300, help="optimizer steps (default 300)")
    g.add_argument("--batch-size", type=pos, default=16, help="batch size (default 16)")
    g.add_argument("--lr", type=flt, default=1e-3, help="AdamW learning rate (default 1e-3)")
    g.add_argument("--seed", type=seed, default=0, help="seed of the init, data order and noise")
    g.add_argument("--threads", type=pos, help="torch CPU threads (default: the free cores)")
    g.add_argument("--out", required=True, help="the adapter file to write (.safetensors)")


def run(args: argparse.Namespace) -> int:
    if not args.out.endswith(".safetensors"):
        raise UserError(f"--out {args.out!r}: an adapter file must end in .safetensors")
    t0 = time.perf_counter()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        set_threads()
    from ...model.files import load_model, save_group
    from ...train.finetune import FinetuneConfig, finetune_lora

    model = load_model(model_path(args.model))
    cfg = FinetuneConfig(
        data=args.data, filter=args.filter, limit=args.limit, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed,
    )  # fmt: skip
    if args.lora:
        targets = args.targets if "," not in args.targets else args.targets.split(",")
        group = finetune_lora(model, cfg, rank=args.rank, alpha=args.alpha, targets=targets)
    else:
        from ...train.finetune import finetune_control

        group = finetune_control(model, cfg, kind=args.control)
    path = save_group(group, args.out)
    print(f"wrote {path} ({group.kind}, {len(group.tensors)} tensors, base {group.base}) in "
          f"{time.perf_counter() - t0:.1f} s on {torch.get_num_threads()} thread(s)")  # fmt: skip
    return 0
