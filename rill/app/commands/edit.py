"""`rill edit inpaint | outpaint | img2img`: edit a PNG with any rill model and any sampler.

Mask convention: white = regenerate, black = keep (diffusers', A1111's); --invert-mask swaps it. Pixels
outside the mask come back bit for bit. Images are read as real PNG files with Pillow; a colour mode the model
does not draw is converted with a note, a nearest-neighbour upscaled copy (as `rill generate` writes) is read
at the model's size with a note, any other size is refused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..common import UserError, load_image_model, number, slug

HELP = "edit a PNG: inpaint (mask: white = regenerate), outpaint (grow the canvas), img2img (SDEdit)"

MASK_RULE = (
    "Mask convention: WHITE = REGENERATE, black = keep (as diffusers and A1111); --invert-mask swaps it. "
    "Pixels outside the mask come back bit for bit."
)


def _ints(count: int, what: str):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count or min(values) < 0:
            raise argparse.ArgumentTypeError(f"expected {what} ({count} non-negative integers), got {text!r}")
        return values

    return parse


def _common(g: argparse.ArgumentParser) -> None:
    pos, seed, flt = number("int>=1"), number("int>=0"), number("float")
    g.add_argument("-n", type=pos, default=4, help="number of results, seeds SEED..SEED+n-1 (default 4)")
    g.add_argument("--seed", type=seed, default=0, help="seed of the first result (default 0)")
    g.add_argument("--nfe", type=pos, default=16, help="denoiser calls per result, all counted (default 16)")
    g.add_argument("--sampler", default="auto", help="'auto' or a name from 'rill samplers' (default auto)")
    g.add_argument("--guidance", type=flt, help="classifier-free guidance w; 1 = none (default: the model's)")
    g.add_argument("--negative", default="", help="negative prompt: the unconditional branch of guidance")
    g.add_argument(
        "--model",
        help="digits | shapes | a .safetensors file or a training run's folder (default: digits if the "
        "prompt mentions a digit or number, else shapes)",
    )
    g.add_argument("--out", default="rill-out", help="output folder (default ./rill-out)")


def _masked(g: argparse.ArgumentParser) -> None:
    jumps = "RePaint: re-noise and re-denoise each block of steps this many times (default 0)"
    g.add_argument("--repaint-jumps", type=number("int>=0"), default=0, help=jumps)
    g.add_argument(
        "--jump-length", type=number("int>=1"), default=2, help="RePaint: steps per block (default 2)"
    )
    blur = "feather the seam over this many pixels, inward only (default 0: hard mask)"
    g.add_argument("--blur", type=number("float"), default=0.0, help=blur)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(parser))
    p = sub.add_parser("inpaint", help="regenerate the white part of a mask", description=MASK_RULE)
    p.add_argument("image", help="the PNG to edit")
    p.add_argument("prompt", help='what the regenerated part should show, e.g. "a handwritten digit 3"')
    p.add_argument("--mask", help="mask PNG of the image's size: WHITE = regenerate, black = keep")
    p.add_argument(
        "--box", type=_ints(4, "x0,y0,x1,y1"), help="regenerate this box (pixels, x1/y1 exclusive)"
    )
    p.add_argument("--invert-mask", action="store_true", help="swap the colours: white = keep")
    _common(p)
    _masked(p)
    p = sub.add_parser(
        "outpaint",
        help="grow the canvas by --pad and fill the new border",
        description="Place IMAGE on a canvas grown by --pad (the model's size) and generate the border; "
        "the original pixels come back bit for bit.",
    )
    p.add_argument("image", help="the PNG to extend")
    p.add_argument("prompt", help="what the whole canvas should show")
    pad = "pixels to add: left,top,right,bottom (the canvas must be the model's size)"
    p.add_argument("--pad", type=_ints(4, "left,top,right,bottom"), required=True, help=pad)
    _common(p)
    _masked(p)
    p = sub.add_parser(
        "img2img",
        help="SDEdit: noise the image to σ_start and denoise it towards the prompt",
        description="strength s in [0, 1] starts at σ_start = σ_min^(1-s)·σ_max^s (the quantile s of the "
        "model's sampling range in log σ); 0 returns the input, 1 is plain generation. --nfe calls are all "
        "spent from σ_start.",
    )
    p.add_argument("image", help="the PNG to start from")
    p.add_argument("prompt", help="what the result should show")
    p.add_argument("--strength", type=number("float"), required=True, help="in [0, 1]: how far to move away")
    _common(p)


def _read_png(path: str, channels: int, size: tuple[int, int] | None, what: str):
    """(uint8 array (H, W) or (H, W, 3), notes): a real PNG via Pillow, converted to the model's colour mode
    and read at `size` when it is an exact integer upscale of it; refused otherwise."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {path!r} does not exist; give a PNG file")
    try:
        im = Image.open(p)
        im.load()
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{what} {path!r} is not an image Pillow can read ({e}); give a PNG file") from None
    notes = []
    want = "L" if channels == 1 else "RGB"
    if im.mode not in (want, "L", "LA", "RGB", "RGBA", "P", "1"):
        raise UserError(
            f"{what} {path!r} has colour mode {im.mode} (16-bit or float); save it as 8-bit {want}"
        )
    if im.mode != want:
        notes.append(f"{what}: converted from {im.mode} to {want} for a {channels}-channel model")
        im = im.convert(want)
    arr = np.asarray(im)
    h, w = arr.shape[:2]
    if size is None or (h, w) == tuple(size):
        return arr, notes
    H, W = size
    k = h // H
    if h == k * H and w == k * W and k > 1:
        blocks = arr.reshape(H, k, W, k, *arr.shape[2:])
        if what == "mask":  # a block with any white pixel is regenerated
            notes.append(f"mask: read the {w}×{h} file at {W}×{H} (a {k}×{k} block with any white is white)")
            return blocks.max(axis=(1, 3)), notes
        first = blocks[:, :1, :, :1]
        if (blocks == first).all():
            notes.append(
                f"{what}: read the ×{k} upscaled {w}×{h} file at {W}×{H} (each {k}×{k} block is one pixel)"
            )
            return first[:, 0, :, 0], notes
    raise UserError(
        f"{what} {path!r} is {w}×{h} but the model draws {W}×{H}; resize it to {W}×{H} first (or pass the "
        f"{W}×{H} PNG that rill wrote, not a resampled copy)"
    )


def _to_tensor(arr):
    import torch

    t = torch.from_numpy(arr.copy())
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return t.float() / 127.5 - 1  # uint8 -> [-1, 1]; rill.viz.images.to_uint8 maps it back exactly


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from .generate import check_sampler

    if args.sampler != "auto":
        check_sampler(args.sampler)
    spec, path, model = load_image_model(args.model, args.prompt, "edit needs an image model")
    shape = tuple(model.config.shape)
    import torch

    from ...inference.edit import img2img, inpaint, outpaint
    from ...viz.images import save_grid, save_png, to_uint8

    opts = {k: getattr(args, k) for k in ("n", "seed", "nfe", "sampler", "guidance", "negative")}
    size = None if args.action == "outpaint" else shape[1:]
    arr, notes = _read_png(args.image, shape[0], size, "image")
    image = _to_tensor(arr)
    shown = [image]
    if args.action == "img2img":
        result = img2img(model, image, args.prompt, strength=args.strength, **opts)
        lo, hi = model.config.sigma_min, model.config.sigma_max
        what = f"σ_start = {result.sigma_start:.4g} (strength {args.strength:g}: quantile in log σ of "
        what += f"[{lo:g}, {hi:g}])"
        keep = None
    else:
        opts.update(repaint_jumps=args.repaint_jumps, jump_length=args.jump_length, blur=args.blur)
        if args.action == "outpaint":
            from ...inference.masks import pad_canvas

            canvas, keep = pad_canvas(image, args.pad, shape)
            result = outpaint(model, image, args.pad, args.prompt, **opts)
            keep, image = ~keep, canvas
        else:
            mask = _mask(args, shape, notes)
            result = inpaint(model, image, mask, args.prompt, invert_mask=args.invert_mask, **opts)
            keep = ~(mask if not args.invert_mask else ~mask)
        shown = [image, torch.where(keep, -1.0, 1.0).expand_as(image)]  # the input, the mask (white = new)
        what = f"{int((~keep).sum())} of {keep.numel()} pixels regenerated (white = regenerate)"
    for note in [*notes, result.note]:
        if note:
            print(f"note: {note}")
    images = result.images
    if keep is not None:  # the guarantee, checked on the bytes that are written
        same = (to_uint8(images)[:, :, keep] == to_uint8(image)[None][:, :, keep]).all()
        if not bool(same):
            raise RuntimeError("pixels outside the mask changed: a bug in rill, please report it")
    out, name = Path(args.out), f"{slug(args.prompt)}-{args.action}"
    written = [save_png(img, out / f"{name}-seed{args.seed + j}.png") for j, img in enumerate(images)]
    scale = max(1, 128 // shape[-2])
    row = torch.cat([torch.stack(shown), images])
    grid = save_grid(row, out / f"{name}-grid.png", nrow=len(row), scale=scale)
    print(f"{args.action}: {what}; {result.calls} denoiser calls per result (--nfe {args.nfe})")
    print(f"wrote {len(written)} image(s) to {out}/ ({written[0].name}{' …' if len(written) > 1 else ''})")
    print(f"grid: {grid} (input{', mask' if keep is not None else ''}, then the results)")
    print(f"time: {time.perf_counter() - t0:.2f} s")
    return 0


def _mask(args: argparse.Namespace, shape: tuple[int, ...], notes: list[str]):
    import torch

    from ...inference.masks import box_mask

    if (args.mask is None) == (args.box is None):
        raise UserError(
            "inpaint needs exactly one of --mask MASK.png or --box x0,y0,x1,y1 (white = regenerate)"
        )
    if args.box is not None:
        try:
            return box_mask(shape[1:], args.box)
        except ValueError as e:
            raise UserError(str(e)) from None
    arr, more = _read_png(args.mask, 1, shape[1:], "mask")
    notes.extend(more)
    return torch.from_numpy(arr.copy()) >= 128
