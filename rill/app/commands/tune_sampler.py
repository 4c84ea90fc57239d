"""`rill tune-sampler MODEL --nfe N`: fit the σ grid of a few-step budget to one model (rill.inference.tune)
and store it in the model file, where `rill generate --sampler auto` finds it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import BUNDLED, UserError, model_path, number, set_threads

HELP = "fit the few-step σ grid to one model and store it in the model file (used by --sampler auto)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .safetensors model file, a training run's folder, or a bundled name")
    p.add_argument("--nfe", type=number("int>=1"), required=True, help="the budget to tune (denoiser calls)")
    p.add_argument("--guidance", type=number("float"), help="guidance to tune at (default: the model's)")
    p.add_argument("--evals", type=number("int>=1"), default=60, help="grid trials (default 60, ~1 min)")
    p.add_argument(
        "--out",
        help="write the tuned model here (default: rewrite the model file in place, atomically; required "
        "for a bundled model)",
    )


def run(args: argparse.Namespace) -> int:
    from ...inference.tune import tune_sampler
    from ...model.files import load_model, save_model

    if args.model in BUNDLED and not args.out:
        raise UserError(
            f"the bundled model {args.model!r} is part of the install; pass --out FILE.safetensors for the "
            "tuned copy"
        )
    path = model_path(args.model)
    out = Path(args.out) if args.out else path
    if out.suffix != ".safetensors" or out.is_dir():
        raise UserError(f"--out {out} must be a .safetensors file path")
    print(f"torch threads: {set_threads()}")
    model = load_model(path)
    plan = tune_sampler(model, args.nfe, guidance=args.guidance, evals=args.evals, log=print)
    if not plan["kept"]:
        print(f"nothing written: auto's own grid stays the better one for {path.name} at {args.nfe} calls")
        return 0
    model.sampling[str(args.nfe)] = plan
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, out, metadata=model.info or None)
    print(
        f"wrote {out}: sampler 'auto' at --nfe {args.nfe} --guidance {plan['guidance']:g} uses the tuned grid"
    )
    return 0
