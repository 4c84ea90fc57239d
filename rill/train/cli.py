"""`rill train` / `python -m rill.train`: the command-line flags onto a TrainConfig, then train."""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

from ..model.config import apply_overrides, config_to_dict, config_to_json
from .config import TrainConfig, train_config_from_dict
from .presets import TRAIN_PRESETS

__all__ = ["train_parser", "config_from_args", "main", "dry_run", "NET_SIZES"]

NET_SIZES = ("tiny", "small", "base")
_FLAGS = {  # flag -> (config key, type, help)
    "--data": ("data", str, "dataset spec: digits, shapes, signals, points:NAME, folder:PATH"),
    "--image-size": (
        "data_kwargs.image_size",
        int,
        "folder:PATH: train at S×S (each image resized so its shorter side is S, then centre-cropped; "
        "default: the preset's size, 32 for shapes); the net's attention moves to match",
    ),
    "--net-preset": ("model.net_preset", str, "backbone size: tiny, small, base"),
    "--steps": ("steps", int, "optimizer steps (with --minutes: whichever comes first)"),
    "--minutes": (
        "minutes",
        float,
        "wall-clock budget in minutes; without --steps it is the only budget (the preset's step count is "
        "dropped) and a wsd schedule lays its cooldown over the time",
    ),
    "--batch-size": ("batch_size", int, "global batch size"),
    "--lr": ("lr", float, "peak learning rate (AdamW)"),
    "--lr-schedule": (
        "lr_schedule",
        str,
        "after warm-up: constant, cosine (to 0 at --steps), cooldown (--cooldown-steps) or wsd (linear to 0 "
        "over the last --cooldown-fraction of the budget, time or steps)",
    ),
    "--cooldown-steps": ("cooldown_steps", int, "lr-schedule cooldown: linear to 0 over the last N steps"),
    "--cooldown-fraction": ("cooldown_fraction", float, "lr-schedule wsd: the share of the budget to decay"),
    "--out": (
        "out_dir",
        str,
        "the run's folder: log.csv, checkpoints/, model.safetensors at the end, samples/ when a preview is "
        "due (--sample-every); one run per folder",
    ),
    "--seed": ("seed", int, "seed of the weights, data order and noise"),
    "--init-from": (
        "init_from",
        str,
        "start the backbone from a rill model file (e.g. runs/a/model.safetensors): a new run, warm-started",
    ),
    "--objective": ("model.parametrisation", str, "edm (default), epsilon or v"),
    "--text-encoder": (
        "model.text_encoder",
        str,
        "minilm, digits (class labels), class:a,b,…, hf:PATH, none",
    ),
    "--mixed-precision": ("mixed_precision", str, "no, bf16 or fp16"),
    "--caption-dropout": ("caption_dropout", float, "probability of training on the empty caption"),
    "--min-snr-gamma": ("min_snr_gamma", float, "min-SNR-γ for epsilon / v objectives"),
    "--ema-halflife": ("ema_halflife_images", float, "EMA half-life in images"),
    "--sample-every": ("sample_every", int, "preview grid every N steps (0 = never)"),
    "--checkpoint-every": ("checkpoint_every", int, "checkpoint every N steps"),
    "--keep-last": ("keep_last", int, "checkpoints to keep"),
    "--log-every": ("log_every", int, "log.csv row every N steps"),
    "--threads": ("num_threads", int, "torch CPU threads"),
}


def train_parser():
    """The argparse parser of `python -m rill.train` / `rill train`."""
    import argparse

    p = argparse.ArgumentParser(
        prog="rill train",
        description="Train a rill diffusion model (HF accelerate; torchrun for several "
        "processes). Example: rill train --preset digits --minutes 10 --out runs/digits",
    )
    p.add_argument(
        "--preset",
        help=f"training preset {sorted(TRAIN_PRESETS)} (default: chosen from --data, "
        f"else digits), or a backbone size {list(NET_SIZES)}",
    )
    for flag, (_, typ, text) in _FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=text)
    p.add_argument("--config", help="a JSON file with a full TrainConfig (e.g. from --dry-run)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config field, dotted (repeatable): --set model.net_overrides.channels=64",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest valid checkpoint in --out")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="--out holds another run: move it aside to OUT.old-<time> (never deleted) and start a new one",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _preset_for_data(data: str | None) -> str:
    """The preset named like the data kind (digits, shapes, emoji, signals, points); shapes' otherwise."""
    kind = (data or "digits").split(":", 1)[0]
    return kind if kind in TRAIN_PRESETS else "shapes"


def config_from_args(args) -> TrainConfig:
    """TrainConfig from parsed `train_parser()` arguments: base (--config, the checkpoint's config when
    resuming without a preset, or a preset), then the flags, then --set pairs."""
    from pathlib import Path

    overrides: dict[str, Any] = {}
    preset = args.preset
    if preset in NET_SIZES:
        overrides["model.net_preset"], preset = preset, None
    if args.config:
        base = json.loads(Path(args.config).read_text(encoding="utf-8"))
    elif args.resume and preset is None and args.data is None:
        from .checkpoint import latest_checkpoint

        out = args.out or TRAIN_PRESETS["digits"]["out_dir"]
        ckpt = latest_checkpoint(out)
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no valid checkpoint under {Path(out) / 'checkpoints'}")
        base = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))["config"]
    else:
        name = preset or _preset_for_data(args.data)
        if name not in TRAIN_PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; choose a training preset {sorted(TRAIN_PRESETS)} "
                f"or a backbone size {list(NET_SIZES)}"
            )
        base = TRAIN_PRESETS[name]
    if args.data is not None and args.data.split(":", 1)[0] != str(base.get("data", "")).split(":", 1)[0]:
        base = {
            **base,
            "data_kwargs": {},
        }  # the preset's data options (e.g. digits' split) are not this data's
    if args.data is not None and args.data.startswith("folder:"):
        if args.image_size is None:
            overrides["data_kwargs.image_size"] = int(base["model"]["shape"][-1])
    elif args.image_size is not None:
        raise ValueError(
            "--image-size is for image folders (--data folder:PATH); other datasets have their size"
        )
    for flag, (key, _, _) in _FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            overrides[key] = None if key == "model.text_encoder" and value == "none" else value
    if args.minutes is not None and args.steps is None:
        overrides["steps"] = None  # --minutes alone is the budget: the run uses all of it
    if args.data is not None and args.data.split(":", 1)[0] in ("points", "signals", "digits", "shapes"):
        overrides.setdefault("model.dataset", args.data)
    for pair in args.set:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        overrides[key.strip()] = value
    return train_config_from_dict(apply_overrides(base, overrides))


def main(argv: list[str] | None = None) -> int:
    """`python -m rill.train` / `rill train`: parse, then train (or print the config with --dry-run).

    Exit codes, the same for every rill command: 0 done, 2 a problem the user can fix (a flag, the config,
    the data, the --out folder; nothing was trained), 1 the run itself failed (a non-finite loss, a disk
    error), 128 + the signal when stopped (130 for Ctrl-C, 143 for SIGTERM) after saving a checkpoint."""
    from .loop import NonFiniteLossError, TrainingInterrupted, train

    args = train_parser().parse_args(argv)
    warnings.formatwarning = lambda message, *_, **__: f"rill train: warning: {message}\n"  # one line each
    try:
        if args.resume and args.overwrite:
            raise ValueError("--resume continues the run in --out, --overwrite moves it aside: pass one")
        cfg = config_from_args(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"rill train: error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(dry_run(cfg))
        return 0
    try:
        train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    except TrainingInterrupted as e:
        print(f"rill train: {e}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, nothing saved since the last checkpoint
        print(
            "rill train: interrupted (the last checkpoint is kept; continue with --resume)", file=sys.stderr
        )
        return 130
    except NonFiniteLossError as e:
        print(f"rill train: error: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:  # the config, the data, --out, a checkpoint: fixable
        print(f"rill train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk failed under the run (full, removed, ...): the last checkpoint is kept
        print(f"rill train: error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def dry_run(config: TrainConfig) -> str:
    """The resolved config as JSON text (what --dry-run prints)."""
    return config_to_json(train_config_from_dict(config_to_dict(config)))


if __name__ == "__main__":
    sys.exit(main())
