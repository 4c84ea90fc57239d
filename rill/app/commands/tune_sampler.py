"""`rill tune-sampler MODEL --nfe 4,5,8`: fit a few-step solver to one model per budget (and per guidance) and
store the plans in the model file, where `rill generate --sampler auto` finds them (rill.inference.tune)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import BUNDLED, UserError, model_path, number, set_threads

HELP = "fit few-step solvers to one model and store them in the model file (used by --sampler auto)"


def _list_of(kind: str):
    one = number(kind)

    def parse(text: str) -> list:
        return [one(part) for part in text.split(",") if part.strip()] or [one(text)]

    return parse


def _interval(text: str) -> tuple[float, float]:
    if text.strip().lower() == "all":
        return (0.0, float("inf"))
    parts = _list_of("float")(text)
    if len(parts) != 2 or not 0 <= parts[0] < parts[1]:
        raise argparse.ArgumentTypeError(f"expected LO,HI with 0 <= LO < HI, or 'all'; got {text!r}")
    return (parts[0], parts[1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .safetensors model file, a training run's folder, or a bundled name")
    p.add_argument("--nfe", type=_list_of("int>=1"), required=True,
                   help="the budgets to tune (denoiser calls), e.g. 8 or 4,5,6,8,10")  # fmt: skip
    p.add_argument("--guidance", type=_list_of("float"),
                   help="guidance values to tune at, e.g. 1,3 (default: the model's)")  # fmt: skip
    p.add_argument("--guidance-interval", type=_interval, metavar="LO,HI|all",
                   help="guidance only for σ in [LO, HI], or 'all' (default: the model's)")  # fmt: skip
    p.add_argument("--prompt", action="append", dest="prompts", metavar="TEXT",
                   help="a prompt to tune on (repeatable; default: 6 of the dataset's captions)")  # fmt: skip
    p.add_argument("--method", choices=("learned", "grid"), default="learned",
                   help="learned: grid and solver weights (default); grid: knots only")  # fmt: skip
    p.add_argument("--steps", type=number("int>=1"), default=120, help="gradient steps per budget (learned)")
    p.add_argument("--evals", type=number("int>=1"), default=60, help="grid trials per budget (grid)")
    p.add_argument(
        "--out",
        help="write the tuned model here (default: rewrite the model file in place, atomically; required "
        "for a bundled model)",
    )


def run(args: argparse.Namespace) -> int:
    from ...inference.plans import plans_at
    from ...inference.tune import tune_plans
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
    opts = dict(method=args.method, steps=args.steps, evals=args.evals, prompts=args.prompts, log=print)
    plans = tune_plans(model, args.nfe, guidance=args.guidance, interval=args.guidance_interval, **opts)
    if not any(p["kept"] for p in plans):
        print(f"nothing written: auto's own plans stay the better ones for {path.name} at these budgets")
        return 0
    for plan in plans:  # replaces an earlier plan at the same budget, guidance and interval
        key, same = str(plan["nfe"]), (plan["guidance"], plan["guidance_interval"])
        others = [
            q for q in plans_at(model, plan["nfe"]) if (q.get("guidance"), q.get("guidance_interval")) != same
        ]
        model.sampling[key] = [*others, plan]
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, out, metadata=model.info or None)
    kept = sum(p["kept"] for p in plans)
    print(
        f"wrote {out}: {kept} of {len(plans)} plans beat auto's own on validation; sampler 'auto' uses them"
    )
    return 0
