"""`rill generate PROMPT`: one PNG per sample (named by seed), upscaled copies, a grid, optionally a GIF.

Every PNG carries its settings (rill.app.outputs); `rill generate --from IMAGE.png` makes that image again.
Exit codes as every rill command: 0 done, 2 a problem the user can fix (checked before sampling), 1 a failure
during the run, 130 Ctrl-C (the images of the batches already finished are on disk)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

from ..adapter_flags import adapted, add_adapter_arguments
from ..common import (
    DEVICE_HELP,
    UserError,
    check_out_dir,
    load_image_model,
    number,
)

HELP = "prompt -> PNG images (one per seed, a grid, optionally a GIF)"


def add_arguments(g: argparse.ArgumentParser) -> None:
    pos, seed, flt = number("int>=1"), number("int>=0"), number("float")
    g.add_argument(
        "prompt", nargs="?", help='e.g. "a handwritten digit 7" or "a large red circle in the center"'
    )
    g.add_argument(
        "--from", dest="from_png", metavar="IMAGE.png",
        help="take every setting from a PNG that rill generate wrote (flags given too override them; -n 1)",
    )  # fmt: skip
    g.add_argument("--negative", help="negative prompt: the unconditional branch of guidance")
    g.add_argument("-n", type=pos, help="number of images, seeds SEED..SEED+n-1 (default 4)")
    g.add_argument("--nfe", type=pos, help="denoiser evaluations per image (default 16, at most 1000)")
    g.add_argument("--sampler", help="'auto' or a name from 'rill samplers' (default auto)")
    g.add_argument(
        "--guidance", type=flt, help="classifier-free guidance w in [0, 100]; 1 = none (default: the model's)"
    )
    g.add_argument("--seed", type=seed, help="seed of the first image (default 0)")
    g.add_argument(
        "--batch-size", type=pos, default=64, help="images sampled at once; each batch is written as it ends"
    )
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


DEFAULTS = {"negative": "", "n": 4, "nfe": 16, "sampler": "auto", "seed": 0}
_FROM = (
    "prompt",
    "negative",
    "nfe",
    "sampler",
    "guidance",
    "seed",
    "sigma_min",
    "sigma_max",
    "model",
    "lora",
)


def _resolve(args: argparse.Namespace) -> dict | None:
    """Fill unset flags from --from's PNG, then from DEFAULTS; returns the PNG's settings (or None)."""
    from ..outputs import read_settings

    saved = read_settings(args.from_png) if args.from_png else None
    for key in _FROM:
        if saved is not None and getattr(args, key, None) in (None, []) and saved.get(key) is not None:
            setattr(args, key, saved[key])
    if saved is not None and args.n is None:
        args.n = 1
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.prompt is None:
        raise UserError('give a prompt (rill generate "a red circle") or --from IMAGE.png')
    return saved


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from .. import outputs

    saved = _resolve(args)
    if args.sampler != "auto":
        check_sampler(args.sampler)
    outputs.check_sampling(args.n, args.nfe, args.guidance, args.sampler)
    out = check_out_dir(args.out)
    spec, path, model = load_image_model(args.model, args.prompt, "call generate() from Python")
    import torch

    from ...inference.generate import generate
    from ...viz.images import make_grid, save_gif, save_png

    settings = _settings(args, spec, path, model)
    if saved is not None and saved.get("model_hash") != settings["model_hash"]:
        outputs.warn(
            f"{args.from_png} was made by model {saved.get('model')!r} (hash {saved.get('model_hash')}), "
            f"but {spec!r} has hash {settings['model_hash']}: the image will not be the same"
        )
    _prompt_warnings(model, args.prompt)
    t_load = time.perf_counter() - t0
    frames: list = []

    def record(step, x, sigma, x0_hat):  # top row: x shown as x / sqrt(1 + σ²); bottom row: x̂0
        x, x0_hat = x[:8].detach().float().cpu() / (1 + sigma**2) ** 0.5, x0_hat[:8].detach().float().cpu()
        frames.append(make_grid(torch.cat([x, x0_hat]).clamp(-1, 1), nrow=x.shape[0]))

    names = ("negative", "nfe", "sampler", "sigma_min", "sigma_max", "device")
    opts = {k: getattr(args, k) for k in names}
    opts["guidance"] = settings["guidance"]
    scale = args.scale or max(1, 128 // model.config.shape[-2])  # default: at least 128 px
    stem = out / f"{outputs.slug(args.prompt)}-{outputs.settings_hash(settings)}"
    grids = outputs.GridWriter(
        stem,
        args.n,
        min(args.n, 8),
        model.config.shape[-2],
        scale,
        outputs.png_text({**settings, "seed": args.seed}),
    )
    written, first = [], None
    from tqdm.auto import tqdm

    batches = range(0, args.n, args.batch_size)
    bar = tqdm(total=args.n, unit="img", disable=len(batches) == 1, file=sys.stderr, dynamic_ncols=True)
    with adapted(model, args) as adapted_model, bar, _ctrl_c_between_batches() as asked:
        for start in batches:  # per-sample seeds: a batch's images equal those of one big call
            if asked():  # Ctrl-C during the last batch: stop here, its images are on disk
                raise KeyboardInterrupt
            k = min(args.batch_size, args.n - start)
            callback = record if args.gif and start == 0 else None
            images = generate(
                adapted_model, args.prompt, n=k, seed=args.seed + start, callback=callback, **opts
            )
            first = images[:8] if first is None else first
            for j, img in enumerate(images):
                text = outputs.png_text({**settings, "seed": args.seed + start + j})
                base = Path(f"{stem}-seed{args.seed + start + j}")
                written.append(save_png(img, base.with_suffix(".png"), text=text))
                if scale > 1:
                    save_png(img, f"{base}-x{scale}.png", scale=scale, text=text)
            grids.add(images)
            bar.update(k)
    t_gen = time.perf_counter() - t0 - t_load
    grid_files = grids.close()
    copies = f"; ×{scale} upscaled copies *-x{scale}.png" if scale > 1 else ""
    more = " …" if len(written) > 1 else ""
    print(
        f"wrote {len(written)} image(s) {tuple(model.config.shape)} to {out}/ "
        f"({written[0].name}{more}{copies})"
    )
    print(f"grid: {grid_files[0]}" + (f" … ({len(grid_files)} files)" if len(grid_files) > 1 else ""))
    if args.gif:
        frames.append(make_grid(torch.cat([first, first]), nrow=min(args.n, 8)))
        print(f"gif:  {save_gif(frames, Path(f'{stem}-denoising.gif'), scale=scale)}")
    print(
        f"time: {t_load:.2f} s importing torch + loading the model, {t_gen:.2f} s text encoder + sampling, "
        f"{time.perf_counter() - t0:.2f} s in total"
    )
    return 0


@contextlib.contextmanager
def _ctrl_c_between_batches():
    """The first SIGINT is noted and acted on at the next batch boundary (a KeyboardInterrupt raised inside
    torch or tqdm could be swallowed there, and the run would go on); a second one interrupts at once. The
    previous handler is restored on exit. Yields `asked()`."""
    state = {"asked": False}

    def handle(signum, frame):
        if state["asked"]:
            raise KeyboardInterrupt
        state["asked"] = True

    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, handle) if main else None
    try:
        yield lambda: state["asked"]
    finally:
        if main:
            signal.signal(signal.SIGINT, old)


def _settings(args: argparse.Namespace, spec: str, path: Path, model) -> dict:
    """Everything that decides the image (recorded in its PNG; the seed is set per image)."""
    from ..outputs import image_settings

    return image_settings(
        prompt=args.prompt, negative=args.negative, seed=args.seed, sampler=args.sampler, nfe=args.nfe,
        guidance=args.guidance, sigma_min=args.sigma_min, sigma_max=args.sigma_max, spec=spec, path=path,
        model=model, lora=getattr(args, "lora", []), device=args.device,
    )  # fmt: skip


def _prompt_warnings(model, prompt: str) -> None:
    """Warn when the text encoder will cut the prompt, or a bundled model never saw some of its words."""
    from ..outputs import unknown_words, warn

    encoder = model.load_text_encoder()
    tokenizer = getattr(getattr(encoder, "encoder", encoder), "tokenizer", None)
    limit = getattr(encoder, "max_length", None)
    if tokenizer is not None and limit:
        count = len(tokenizer([prompt], padding=False, truncation=False)["input_ids"][0])
        if count > limit:
            warn(
                f"the prompt is {count} tokens but the text encoder reads only the first {limit}; the rest "
                "is ignored (shorten it)"
            )
    new = unknown_words(prompt, model.config.dataset)
    if new is not None:
        words, known = new
        warn(
            f"this model never saw {', '.join(map(repr, words))} in training (it was trained on "
            f"{model.config.dataset!r} captions); words this model knows: {' '.join(sorted(known))}"
        )


def check_sampler(name: str) -> None:
    from ...samplers import get_sampler

    try:
        get_sampler(name)
    except ValueError as e:
        raise UserError(f"{e} (or 'auto'); see 'rill samplers'") from None
