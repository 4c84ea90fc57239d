"""The `rill` command.

    rill demo                               prompt grids and a denoising strip from the bundled models
    rill generate "a red circle" -n 4       one PNG per sample (named by seed) + a grid, in --out
    rill train --data digits --preset tiny  train (forwards to rill.train)
    rill info CKPT | rill samplers | rill eval CKPT

`import rill.app.cli` is light (argparse only); each command imports what it needs when it runs. Errors a
user can
fix print one line naming the problem and the next step and exit with code 2 (RILL_DEBUG=1: traceback).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

BUNDLED = ("digits", "shapes")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_RE = re.compile(
    r"(?<![a-z0-9])(\d|digit|digits|number|numeral|handwritten|" + "|".join(_NUMBER_WORDS) + ")"
    r"(?![a-z0-9])"
)


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, and where to look, instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


_KINDS = {"int>=1": "a positive integer", "int>=0": "a non-negative integer", "float": "a finite number"}


def _number(kind: str):
    """An argparse type: "int>=1", "int>=0" or "float" (finite); the error names what was expected."""

    def parse(text: str) -> int | float:
        try:
            value = float(text) if kind == "float" else int(text)
        except ValueError:
            value = None
        lo = {"int>=1": 1, "int>=0": 0}.get(kind, -float("inf"))
        if value is None or not (lo <= value < float("inf")):
            raise argparse.ArgumentTypeError(f"expected {_KINDS[kind]}, got {text!r}")
        return value

    return parse


# --- models -------------------------------------------------------------------------------------------------
def choose_bundled(prompt: str) -> str:
    """'digits' when the prompt mentions a digit or a number ("7", "seven", "digit", "handwritten"), else
    'shapes'."""
    return "digits" if _DIGIT_RE.search(prompt.lower()) else "shapes"


def check_checkpoint(path: str) -> Path:
    """A readable .safetensors file, or a UserError saying what is wrong and what to do."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(
            f"checkpoint {path!r} does not exist; pass a .safetensors file written by 'rill train' "
            f"or a bundled model: {', '.join(BUNDLED)}"
        )
    if p.is_dir():
        if (p / "model.safetensors").is_file():  # a training run's folder: its final model
            return check_checkpoint(str(p / "model.safetensors"))
        raise UserError(
            f"checkpoint {path!r} is a folder without a model.safetensors; pass a .safetensors file"
        )
    with open(p, "rb") as f:
        head = f.read(9)
    if p.suffix != ".safetensors" or len(head) < 9 or head[8:9] != b"{":
        raise UserError(
            f"checkpoint {path!r} is not a safetensors file; rill reads models saved by "
            "'rill train' (model.safetensors), never pickles"
        )
    return p


def model_path(spec: str) -> Path:
    """The model file of a bundled name ('digits', 'shapes'), a .safetensors path or a run's folder."""
    return bundled_path(spec) if spec in BUNDLED else check_checkpoint(spec)


def set_threads() -> int:
    """torch threads = the cores not already busy (1-min load average), unless OMP_NUM_THREADS is set.

    torch's OpenMP threads spin-wait for each other: on an oversubscribed CPU, 16 denoiser calls of the digits
    model took 24 s with 2 threads and 0.8 s with 1 (2 cores, load average 9), so never ask for busy cores.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        cores = os.cpu_count() or 1
        try:
            free = round(cores - os.getloadavg()[0])
        except OSError:  # no load average on this platform
            free = cores
        torch.set_num_threads(max(1, min(cores, free)))
    return torch.get_num_threads()


def _slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "unconditional"


# --- commands -----------------------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.sampler != "auto":
        _check_sampler(args.sampler)
    spec = args.model or choose_bundled(args.prompt)
    if not args.model:
        print(f"model: bundled '{spec}' (chosen from the prompt; pass --model digits|shapes|CKPT to choose)")
    path = model_path(spec)
    import torch

    set_threads()
    from ..inference.generate import generate
    from ..model.files import load_model
    from ..viz.images import make_grid, save_gif, save_grid, save_png

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
    images = generate(model, args.prompt, callback=record if args.gif else None, **opts)
    t_gen = time.perf_counter() - t0 - t_load
    out = Path(args.out)
    scale = args.scale or max(1, 128 // images.shape[-2])  # default: at least 128 px
    slug = _slug(args.prompt)
    written = []
    for j, img in enumerate(images):
        base = out / f"{slug}-seed{args.seed + j}"
        written.append(save_png(img, base.with_suffix(".png")))
        if scale > 1:
            save_png(img, f"{base}-x{scale}.png", scale=scale)
    grid = save_grid(images, out / f"{slug}-grid.png", nrow=min(args.n, 8), scale=scale)
    copies = f"; ×{scale} upscaled copies *-x{scale}.png" if scale > 1 else ""
    more = " …" if len(written) > 1 else ""
    print(
        f"wrote {len(written)} image(s) {tuple(images.shape[1:])} to {out}/ ({written[0].name}{more}{copies})"
    )
    print(f"grid: {grid}")
    if args.gif:
        frames.append(make_grid(torch.cat([images[:8], images[:8]]), nrow=min(args.n, 8)))
        print(f"gif:  {save_gif(frames, out / f'{slug}-denoising.gif', scale=scale)}")
    print(
        f"time: {t_load:.2f} s importing torch + loading the model, {t_gen:.2f} s text encoder + sampling, "
        f"{time.perf_counter() - t0:.2f} s in total"
    )
    return 0


def _check_sampler(name: str) -> None:
    from ..samplers import get_sampler

    try:
        get_sampler(name)
    except ValueError as e:
        raise UserError(f"{e} (or 'auto'); see 'rill samplers'") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print(f"torch threads: {set_threads()}")
    run_demo(Path(args.out), nfe=args.nfe, seed=args.seed, device=args.device, columns=args.columns)
    return 0


def bundled_path(name: str) -> Path:
    """The file of a bundled model (rill/assets/NAME.safetensors), or a UserError if it is not installed."""
    from importlib import resources

    path = Path(str(resources.files("rill") / "assets" / f"{name}.safetensors"))
    if not path.is_file():
        raise UserError(
            f"the bundled model {name!r} is not installed ({path} is missing); reinstall rill "
            f"(pip install -e .) or train one: rill train --preset {name}"
        )
    return path


def describe(path: Path) -> dict:
    """What a model file holds, read from its header only (no weights are loaded)."""
    import json
    import math

    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    if "rill.model_config" not in meta:
        raise UserError(
            f"{path} is a safetensors file but not a rill model (no 'rill.model_config' metadata; "
            f"keys: {sorted(meta)}); rill train writes model files that have it"
        )
    config = json.loads(meta["rill.model_config"])
    net = config.pop("net_overrides", {})
    params = sum(math.prod(s) for k, s in shapes.items() if k.startswith("net."))
    info = {
        "file": str(path),
        "size": f"{path.stat().st_size / 2**20:.2f} MiB",
        "format": meta.get("rill.format", "?"),
        "parameters": f"{params:,} in {sum(k.startswith('net.') for k in shapes)} tensors",
        "text encoder": config.pop("text_encoder", None) or "none (unconditional)",
        "model": config,
        "backbone": net,
    }
    if "rill.info" in meta:
        info["training"] = json.loads(meta["rill.info"])
    return info


def cmd_info(args: argparse.Namespace) -> int:
    import json

    info = describe(model_path(args.checkpoint))
    print(json.dumps(info, indent=2, default=str) if args.json else _format_info(info))
    return 0


def _format_info(info: dict) -> str:
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def cmd_samplers(args: argparse.Namespace) -> int:
    from ..samplers import INFO, SAMPLERS, resolve

    rows = [("name", "order", "stochastic", "NFE for 10 steps", "what")]
    for name in SAMPLERS:  # every registered sampler has an INFO entry (rill.samplers)
        i = INFO[name]
        rows.append((name, str(i.order), "yes" if i.stochastic else "no", str(i.nfe(10, {})), i.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:4], widths)) + "  " + r[4])
    name, opts, grid = resolve("auto", 16)
    print(f"\n'auto' (the default) fits a sampler and σ grid to the NFE budget; at 16 NFE: {name}", end="")
    print(f" {opts}" if opts else "", f"on the {grid!r} grid")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..train.cli import main as train_main

    return int(train_main(args.forward) or 0)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..eval.cli import main_eval

    return int(main_eval(args.forward) or 0)


# --- parser -------------------------------------------------------------------------------------------------
def _command(sub, name: str, text: str, func, **kw) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".", **kw)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = _Parser(
        prog="rill",
        description="Diffusion models in noise-level space: text-to-image on a laptop.",
        epilog="Start with 'rill demo'. Each command has --help.",
    )
    p.add_argument("--version", action="version", version=f"rill {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    pos, seed, flt = _number("int>=1"), _number("int>=0"), _number("float")
    device_help = "cpu | cuda | mps (default: the best available)"

    g = _command(
        sub, "generate", "prompt -> PNG images (one per seed, a grid, optionally a GIF)", cmd_generate
    )
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
    g.add_argument("--device", help=device_help)
    g.add_argument("--sigma-min", type=flt, help="smallest σ of the sampling grid (default: the model's)")
    g.add_argument("--sigma-max", type=flt, help="largest σ of the sampling grid (default: the model's)")

    d = _command(sub, "demo", "digit and shape grids and a denoising strip from the bundled models", cmd_demo)
    d.add_argument("--out", default="rill-demo", help="output folder (default ./rill-demo)")
    d.add_argument("--nfe", type=pos, default=16, help="denoiser evaluations per image (default 16)")
    d.add_argument("--seed", type=seed, default=0, help="seed of the first column (default 0)")
    d.add_argument("--columns", type=pos, default=6, help="samples per prompt (default 6)")
    d.add_argument("--device", help=device_help)

    t = _command(
        sub, "train", "train a model ('rill train --help' lists the options)", cmd_train, add_help=False
    )
    t.add_argument(
        "train_args", nargs=argparse.REMAINDER, help="--data, --preset, --steps/--minutes, --out, ..."
    )

    i = _command(sub, "info", "what a model file holds: config, parameters, text encoder, recipe", cmd_info)
    i.add_argument(
        "checkpoint", help="a .safetensors model file, a training run's folder, or digits | shapes"
    )
    i.add_argument("--json", action="store_true", help="print JSON")

    _command(sub, "samplers", "list the samplers with their order and NFE per step", cmd_samplers)

    e = _command(
        sub, "eval", "evaluate a model ('rill eval --help' lists the options)", cmd_eval, add_help=False
    )
    e.add_argument("forward", nargs=argparse.REMAINDER, help="CKPT and options for rill.evaluate")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] in (["train"], ["eval"]):  # the rest belongs to rill.train's / rill.evaluate's own parser
        func = cmd_train if argv[0] == "train" else cmd_eval
        args = argparse.Namespace(command=argv[0], func=func, forward=argv[1:])
    else:
        args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (UserError, FileNotFoundError, ValueError) as e:  # rill's errors name the bad value and the fix
        if os.environ.get("RILL_DEBUG"):
            raise
        print(f"rill {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rill {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `rill info CKPT | head`: stop quietly (Python docs, "Note on SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
