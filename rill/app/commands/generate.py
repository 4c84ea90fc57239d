"""`rill generate PROMPT`: one PNG per sample (named by seed), upscaled copies, a grid, optionally a GIF."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..adapter_flags import adapted, add_adapter_arguments
from ..common import DEVICE_HELP, UserError, choose_bundled, model_path, number, set_threads, slug

HELP = "prompt -> PNG images (one per seed, a grid, optionally a GIF)"


def add_arguments(g: argparse.ArgumentParser) -> None:
    pos, seed, flt = number("int>=1"), number("int>=0"), number("float")
    g.add_argument("prompt", help='e.g. "a handwritten digit 7" or "a large red circle in the center"')
    g.add_argument("--negative", default="", help="negative prompt: the unconditional branch of guidance")
    g.add_argument("-n", type=pos, default=4, help="number of images, seeds SEED..SEED+n-1 (default 4)")
    g.add_argument("--nfe", type=pos, default=16, help="denoiser evaluations per image (default 16)")
    g.add_argument("--sampler", default="auto", help="'auto' or a name from 'rill samplers' (default auto)")
    g.add_argument("--guidance", type=flt, help="classifier-free guidance w; 1 = none (default: the model's)")
    g.add_argument("--seed", type=seed, default=0, help="seed of the first image (default 0)")
    g.add_argument(
        "--model",
        help="digits | shapes | a .safetensors file or a training run's folder (default: "
        "digits if the prompt mentions a digit or number, else shapes)",
    )
    g.add_argument("--out", default="rill-out", help="output folder (default ./rill-out)")
    g.add_argument("--scale", type=pos, help="upscaling of the extra *-xS.png copies (default: to >= 128 px)")
    g.add_argument(
        "--gif", action="store_true", help="also save an animation of x and x̂0 over the sampler's steps"
    )
    g.add_argument("--device", help=DEVICE_HELP)
    g.add_argument("--sigma-min", type=flt, help="smallest σ of the sampling grid (default: the model's)")
    g.add_argument("--sigma-max", type=flt, help="largest σ of the sampling grid (default: the model's)")
    add_adapter_arguments(g)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.sampler != "auto":
        check_sampler(args.sampler)
    spec = args.model or choose_bundled(args.prompt)
    if not args.model:
        print(f"model: bundled '{spec}' (chosen from the prompt; pass --model digits|shapes|CKPT to choose)")
    path = model_path(spec)
    import torch

    set_threads()
    from ...inference.generate import generate
    from ...model.files import load_model
    from ...viz.images import make_grid, save_gif, save_grid, save_png

    model = load_model(path)
    if len(model.config.shape) != 3 or model.config.shape[0] not in (1, 3):
        raise UserError(
            f"{path} makes samples of shape {model.config.shape}, not images; call generate() from Python"
        )
    t_load = time.perf_counter() - t0
    frames: list = []

    def record(step, x, sigma, x0_hat):  # top row: x shown as x / sqrt(1 + σ²); bottom row: x̂0
        x, x0_hat = x[:8].detach().float().cpu() / (1 + sigma**2) ** 0.5, x0_hat[:8].detach().float().cpu()
        frames.append(make_grid(torch.cat([x, x0_hat]).clamp(-1, 1), nrow=x.shape[0]))

    names = ("negative", "n", "nfe", "sampler", "guidance", "seed", "sigma_min", "sigma_max", "device")
    opts = {k: getattr(args, k) for k in names}
    with adapted(model, args) as adapted_model:
        images = generate(adapted_model, args.prompt, callback=record if args.gif else None, **opts)
    t_gen = time.perf_counter() - t0 - t_load
    out = Path(args.out)
    scale = args.scale or max(1, 128 // images.shape[-2])  # default: at least 128 px
    name = slug(args.prompt)
    written = []
    for j, img in enumerate(images):
        base = out / f"{name}-seed{args.seed + j}"
        written.append(save_png(img, base.with_suffix(".png")))
        if scale > 1:
            save_png(img, f"{base}-x{scale}.png", scale=scale)
    grid = save_grid(images, out / f"{name}-grid.png", nrow=min(args.n, 8), scale=scale)
    copies = f"; ×{scale} upscaled copies *-x{scale}.png" if scale > 1 else ""
    more = " …" if len(written) > 1 else ""
    print(
        f"wrote {len(written)} image(s) {tuple(images.shape[1:])} to {out}/ ({written[0].name}{more}{copies})"
    )
    print(f"grid: {grid}")
    if args.gif:
        frames.append(make_grid(torch.cat([images[:8], images[:8]]), nrow=min(args.n, 8)))
        print(f"gif:  {save_gif(frames, out / f'{name}-denoising.gif', scale=scale)}")
    print(
        f"time: {t_load:.2f} s importing torch + loading the model, {t_gen:.2f} s text encoder + sampling, "
        f"{time.perf_counter() - t0:.2f} s in total"
    )
    return 0


def check_sampler(name: str) -> None:
    from ...samplers import get_sampler

    try:
        get_sampler(name)
    except ValueError as e:
        raise UserError(f"{e} (or 'auto'); see 'rill samplers'") from None
