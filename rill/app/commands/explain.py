"""`rill explain`: a folder of figures (PNG, GIF) with an index.html that explains what the model does."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..common import DEVICE_HELP, UserError, model_path, number, set_threads

HELP = "figures that show how the model turns noise into an image (index.html in --out)"

PROMPTS = {"digits": "a handwritten digit 3", "shapes": "a large red circle in the center"}
POINTS_DATA = (
    "points:gaussians8"  # the 2-D data trained on when no --points model is given: its mixture is exact
)
# a points model that trains in seconds on one thread (34k parameters); the bundled file POINTS_ASSET is this
# one after 1500 steps (recipes/points.md), so by default nothing is trained
POINTS_TRAINING = {"model.net_preset": "tiny", "model.net_overrides": {"hidden": 48, "num_blocks": 2}}
POINTS_ASSET = "points-gaussians8"
POINTS_STEPS = 1500


def add_arguments(g: argparse.ArgumentParser) -> None:
    from ...viz.explain import VIEWS

    g.add_argument(
        "--model",
        default="shapes",
        help="digits | shapes | a .safetensors file | a run's folder "
        "(default shapes; a run folder adds the Training view and its log)",
    )
    g.add_argument("--prompt", help="the prompt every image view draws (default: one that suits the model)")
    g.add_argument("--out", default="rill-explain", help="output folder (default ./rill-explain)")
    g.add_argument(
        "--points",
        help="a 2-D points model for the Water and Paths views (default: the shipped one, trained on "
        f"points:gaussians8 for {POINTS_STEPS} steps)",
    )
    g.add_argument(
        "--points-steps",
        type=number("int>=1"),
        help="train the points model for this many steps instead (seconds; kept in OUT/points-model/)",
    )
    g.add_argument("--views", help=f"comma-separated subset of {','.join(VIEWS)} (default all)")
    g.add_argument("--seed", type=number("int>=0"), default=0, help="seed of every image (default 0)")
    g.add_argument("--nfe", type=number("int>=1"), default=16, help="denoiser calls per image (default 16)")
    g.add_argument("--device", help=DEVICE_HELP)


def _run_folder(spec: str) -> Path | None:
    p = Path(spec).expanduser()
    return p if p.is_dir() and (p / "model.safetensors").is_file() else None


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    from ...train.checkpoint import list_checkpoints

    out = []
    for folder in list_checkpoints(run):
        weights = folder / "ema.safetensors"
        out.append(
            (int(folder.name.split("-")[1]), weights if weights.is_file() else folder / "model.safetensors")
        )
    return out


def points_config(out_dir: Path, steps: int, threads: int = 1):
    """The TrainConfig of the points model `rill explain` trains when none is given."""
    from ...train.presets import train_preset

    over = {"model.dataset": POINTS_DATA, **POINTS_TRAINING}
    return train_preset(
        "points",
        steps=steps,
        lr=3e-3,
        data=POINTS_DATA,
        out_dir=str(out_dir),
        sample_every=0,
        checkpoint_every=0,
        keep_last=1,
        log_every=100,
        cpu=True,
        num_threads=threads,
        ema_halflife_images=20_000,
        **over,
    )


def _points_model(args: argparse.Namespace, out: Path):
    """The --points model, else the shipped one (unless --points-steps asks for a new one or it is not
    installed), else the one trained earlier into OUT/points-model/, else a new one (seconds)."""
    from ...model.files import bundled_file, load_model

    if args.points:
        return load_model(model_path(args.points))
    shipped = bundled_file(POINTS_ASSET)
    if args.points_steps is None and shipped.is_file():
        return load_model(shipped)
    folder = out / "points-model"
    if not (folder / "model.safetensors").is_file():
        import torch

        from ...train.loop import train

        steps = args.points_steps or POINTS_STEPS
        print(f"training a 2-D points model on {POINTS_DATA} ({steps} steps) into {folder}/")
        train(points_config(folder, steps, torch.get_num_threads()), progress=False)
    return load_model(folder / "model.safetensors")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    path = model_path(args.model)
    set_threads()
    from ...inference.generate import pick_device
    from ...model.files import load_model
    from ...viz.explain import Inputs, explain, write_index
    from ...viz.explain.water import data_mixture

    try:
        from ...viz.explain._common import pyplot

        pyplot()
    except ImportError as e:
        raise UserError(str(e)) from None
    views = [v.strip() for v in args.views.split(",") if v.strip()] if args.views else None
    device = pick_device(args.device)
    model = load_model(path, device=device)
    out = Path(args.out)
    run_dir = _run_folder(args.model)
    two_d = tuple(model.config.shape) == (2,)
    need_points = views is None or {"water", "paths"} & set(views)
    points = model if two_d else (_points_model(args, out) if need_points else None)
    dataset = points.config.dataset if points is not None else None
    mixture = data_mixture(dataset) if dataset and dataset.startswith("points:") else None
    if points is not None and mixture is None:
        raise UserError(
            f"the points model was trained on {dataset!r}, not a points:NAME data set; pass "
            "--points with a model trained on points:gaussians8 (or another points set)"
        )
    name = args.model if args.model in PROMPTS else path.stem if run_dir is None else run_dir.name
    prompt = args.prompt if args.prompt is not None else PROMPTS.get(args.model, "")
    inp = Inputs(
        model=model,
        out=out,
        prompt=prompt,
        seed=args.seed,
        nfe=args.nfe,
        points=points,
        mixture=mixture,
        checkpoints=_checkpoints(run_dir) if run_dir else [],
        log_csv=run_dir / "log.csv" if run_dir else None,
        device=device,
    )
    done = explain(inp, views, progress=print)
    facts = {
        "model": str(path),
        "prompt": prompt,
        "seed": args.seed,
        "nfe": args.nfe,
        "points model": dataset or "none",
        "wall time (s)": round(time.perf_counter() - t0, 1),
    }
    page = write_index(done, out, f"rill explain: {name}", facts)
    print(f"wrote {page} ({sum(len(v.figures) for v in done)} figures) in {time.perf_counter() - t0:.1f} s")
    return 0
