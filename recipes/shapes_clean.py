"""Continue training the bundled shapes model with a full-resolution output refinement (issue 14 item 0,
"clean pictures"): the shipped U-Net's weights, plus `refine_channels` (rill.nets.layers.PixelRefine, whose
last conv starts at zero, so step 0 computes exactly the shipped model), trained on with the shapes recipe.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python recipes/shapes_clean.py --out runs/shapes-clean --steps 2000
    # then: cp runs/shapes-clean/model.safetensors rill/assets/shapes.safetensors

How: the start is written as the run's step-0 checkpoint (the shipped weights with the new layer, a fresh
AdamW, the EMA equal to the weights, the run's noise generator), and `rill.train.train` resumes from it, so
the run is an ordinary rill run folder (log.csv, checkpoints, `--resume` after an interruption: pass
--resume). This is a continuation of the shipped model, not a from-scratch run of the new net.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch


def start_config(args: argparse.Namespace):
    from rill.train import train_preset
    from rill.train.presets import TRAIN_PRESETS

    net = dict(TRAIN_PRESETS["shapes"]["model"]["net_overrides"], refine_channels=args.refine_channels)
    return train_preset(
        "shapes",
        **{
            "model.net_overrides": net,
            "steps": args.steps,
            "lr": args.lr,
            "lr_schedule": "cooldown",
            "cooldown_steps": args.cooldown_steps or args.steps // 2,
            "warmup_steps": args.warmup_steps,
            "out_dir": args.out,
            "num_threads": args.threads,
            "seed": args.seed,
            "sample_every": 0,
            "checkpoint_every": 250,
        },
    )


def write_start(cfg, base: str) -> Path:
    """The step-0 checkpoint of the continuation: `base`'s backbone weights in the new net."""
    from rill.model import bundled_model
    from rill.model.bundle import DiffusionModel
    from rill.model.config import config_to_dict
    from rill.model.files import read_safetensors
    from rill.train.checkpoint import Checkpoint, capture_rng, save_checkpoint
    from rill.train.ema import EMA

    torch.manual_seed(cfg.seed)
    model = DiffusionModel(cfg.model)
    path = base if base.endswith(".safetensors") else None
    if path is None:
        state = bundled_model(base).net.state_dict()
    else:
        tensors, _ = read_safetensors(path)
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("refine.") for k in missing):
        raise ValueError(f"{base}: not the shapes backbone (missing {missing}, unexpected {unexpected})")
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(model.net, cfg.ema_decay, cfg.ema_halflife_images, cfg.ema_rampup)
    noise = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919)  # rill.train.loop's, one process
    rng_t, rng_m = capture_rng()
    state = dict(images_seen=0, wall_time=0.0, config=config_to_dict(cfg), world_size=1,
                 threads=torch.get_num_threads(), continued_from=base)  # fmt: skip
    meta = {"rill.model_config": json.dumps(config_to_dict(model.config))}
    rng_t["gen.noise"] = noise.get_state()[None]
    ck = Checkpoint(0, model.net.state_dict(), opt.state_dict(), rng_t, rng_m, state, ema.state_dict(), meta)
    return save_checkpoint(cfg.out_dir, ck, cfg.keep_last)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="shapes", help="the model to continue (bundled name or .safetensors)")
    p.add_argument("--out", default="runs/shapes-clean")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--cooldown-steps", type=int, default=0, help="linear lr decay over the last N (0: half)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--refine-channels", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue this run after an interruption")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from rill.train import train

    cfg = start_config(args)
    if not args.resume:
        if (Path(args.out) / "checkpoints").exists():
            print(f"{args.out} already holds a run: pass --resume or another --out", file=sys.stderr)
            return 2
        print(f"start: {write_start(cfg, args.base)}")
    print(train(cfg, resume=True, progress=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
