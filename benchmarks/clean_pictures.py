"""Why the shapes model's pictures are speckled, and whether a model fixes it (issue 14 item 0).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python -m benchmarks.clean_pictures [--model shapes]
        [--model NEW.safetensors] [--images 64] [--out benchmarks/results/clean_pictures.md]

For every model:
1. fixed-σ denoising of real renders (32 fresh "train"-split scenes, one noise draw, conditional, w = 1):
   x̂0 = D(x0 + σn; σ) on a log σ grid; on the background (pixels ≥ 2 px from every shape) the RMS error of
   x̂0, the pass-through β = <e, σn> / <σn, σn> (1: the noise is left in, 0: removed), and the share of the
   error's energy in the 4×4 patch means (1/16 for white error; below it, the error lives inside the patches),
   next to the share of training draws (ln σ ~ N(−1.2, 1.2²)) in each σ bin;
2. along sampling (the validation prompts, w = 3, 25 NFE, sampler auto): the background std of x̂0 at each
   step, and of the final images with their patch-blob count (rill.eval.clean_check), beside real renders.
Writes a markdown table per model (the raw numbers in a JSON block too).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SIGMAS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 80.0)
P_MEAN, P_STD = -1.2, 1.2


def _load(spec: str):
    from rill.model import bundled_model, load_model

    return load_model(spec) if spec.endswith(".safetensors") else bundled_model(spec)


def _train_share(i: int) -> float:
    """Mass of ln σ ~ N(P_MEAN, P_STD²) in the bin of SIGMAS[i] (edges at the geometric midpoints)."""
    ln = [math.log(s) for s in SIGMAS]
    lo = -math.inf if i == 0 else (ln[i - 1] + ln[i]) / 2
    hi = math.inf if i == len(ln) - 1 else (ln[i] + ln[i + 1]) / 2
    cdf = lambda v: 0.5 * (1 + math.erf((v - P_MEAN) / (P_STD * math.sqrt(2))))  # noqa: E731
    return cdf(hi) - cdf(lo)


@torch.no_grad()
def fixed_sigma(model, n: int = 32) -> list[dict]:
    from scipy import ndimage

    from rill.data import load_dataset
    from rill.data.shapes import BACKGROUND

    ds = load_dataset("shapes", split="train", seed=777)
    x0 = torch.stack([ds[i][0] for i in range(n)])
    cond = model.encode([ds.caption(i) for i in range(n)])
    bgc = torch.tensor(BACKGROUND, dtype=torch.float32) / 127.5 - 1
    off = ((x0 - bgc[:, None, None]).abs().amax(1) > 1e-3).numpy()  # (N, H, W)
    grow = np.zeros((1, 3, 3), bool)
    grow[0] = True
    bg = ~ndimage.binary_dilation(off, structure=grow, iterations=2)
    bg = torch.from_numpy(bg)[:, None]  # (N, 1, H, W)
    patch_bg = F.avg_pool2d(bg.float(), 4) == 1  # (N, 1, H/4, W/4) patches wholly in the background
    pix_bg = F.interpolate(patch_bg.float(), scale_factor=4) == 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    rows = []
    for i, s in enumerate(SIGMAS):
        e = model.denoiser(x0 + s * noise, torch.full((n,), s), cond) - x0  # (N, 3, H, W)
        m = bg.expand_as(e)
        sn = s * noise
        patch_energy = F.avg_pool2d(e, 4).square()[patch_bg.expand(-1, 3, -1, -1)].mean()
        rows.append(
            {
                "sigma": s,
                "train_share": _train_share(i),
                "bg_rms": e[m].square().mean().sqrt().item(),
                "pass_through": ((e * sn)[m].sum() / sn[m].square().sum()).item(),
                "patch_mean_share": (patch_energy / e[pix_bg.expand_as(e)].square().mean()).item(),
                "rms": e.square().mean().sqrt().item(),
            }
        )
    return rows


def sampling(model, n: int) -> dict:
    from rill.data import load_dataset
    from rill.eval.clean_check import background_std, clean_summary
    from rill.inference.generate import generate

    ds = load_dataset("shapes", split="train", seed=777)
    prompts = [ds.caption(i) for i in range(n)]
    steps: list[tuple[float, float]] = []

    def callback(step, x, sigma, x0_hat):  # x̂0's background std at each step (first chunk)
        k = min(16, len(x0_hat))
        stds = [background_std(x0_hat[j].clamp(-1, 1), prompts[j]) for j in range(k)]
        steps.append((float(sigma), float(np.nanmean(stds))))

    t = time.perf_counter()
    images = generate(model, prompts, n=1, nfe=25, guidance=3.0, seed=5000, callback=callback, device="cpu")
    seconds = time.perf_counter() - t
    real = torch.stack([ds[i][0] for i in range(n)])
    out, out_real = clean_summary(images, prompts), clean_summary(real, prompts)
    return {
        "images": n,
        "seconds": round(seconds, 1),
        "background_std": out["background_std"],
        "blob_images": out["blob_images"],
        "blobs": out["blobs"],
        "background_std_real": out_real["background_std"],
        "blob_images_real": out_real["blob_images"],
        "steps": steps,
    }


def _table(name: str, rows: list[dict], samp: dict) -> str:
    lines = [
        f"### {name}",
        "",
        "Fixed-σ denoising of 32 real renders (background pixels):",
        "",
        "| σ | training draws in this bin | RMS error of x̂0 | noise passed through β | error share in 4×4 "
        "patch means (white: 0.0625) | RMS error, whole image |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sigma']:g} | {100 * r['train_share']:.1f}% | {r['bg_rms']:.4f} | {r['pass_through']:.3f} "
            f"| {r['patch_mean_share']:.3f} | {r['rms']:.4f} |"
        )
    lines += [
        "",
        f"Sampling ({samp['images']} validation prompts, w = 3, 25 NFE, auto, {samp['seconds']} s): "
        f"background std **{samp['background_std']:.4f}** (real renders {samp['background_std_real']:.4f}), "
        f"images with a patch blob **{100 * samp['blob_images']:.1f}%** ({samp['blobs']} blobs; real "
        f"{100 * samp['blob_images_real']:.1f}%).",
        "",
        "Background std of x̂0 along sampling (first 16 images), σ: std — "
        + ", ".join(f"{s:.3g}: {v:.3f}" for s, v in samp["steps"][::3]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="bundled name or .safetensors (repeat; default shapes)")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results/clean_pictures.md")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    results = {}
    for spec in args.model or ["shapes"]:
        model = _load(spec).eval()
        results[spec] = {"fixed_sigma": fixed_sigma(model), "sampling": sampling(model, args.images)}
        print(_table(spec, results[spec]["fixed_sigma"], results[spec]["sampling"]), flush=True)
    doc = [
        "# Clean pictures: where the shapes model's speckle comes from",
        "",
        "Written by `python -m benchmarks.clean_pictures "
        + " ".join(f"--model {m}" for m in results)
        + f" --images {args.images}` (one CPU thread). Reading: docs/clean-pictures.md.",
        "",
        *(_table(k, v["fixed_sigma"], v["sampling"]) for k, v in results.items()),
        "```json",
        json.dumps(results, indent=1),
        "```",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(doc), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
