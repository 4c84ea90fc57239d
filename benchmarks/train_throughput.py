"""Training throughput (images/s): rill's U-Net vs a diffusers UNet2DConditionModel of similar size, same data
shape, same batch, same text-token conditioning, in one process.

    python benchmarks/train_throughput.py --seconds 60      # -> benchmarks/results/train_throughput.{md,json}

One training step = forward + loss + backward + AdamW step: rill with its EDM loss through EDMPrecond (the
`digits` / `shapes` presets), diffusers with the ε-MSE on DDPMScheduler.add_noise. Measurements alternate
between the two nets in short rounds, so a neighbour's load on the shared CPU hits both alike; the median
round is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_vs_diffusers import peer_unet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CASES = {  # name: (rill preset, candidate diffusers widths, shape, batch)
    "digits": ("digits", [(16, 32), (24, 48), (32, 64), (48, 96)], (1, 8, 8), 128),
    "shapes": (
        "shapes",
        [(24, 48, 48), (32, 48, 64), (32, 64, 64), (48, 96, 96), (64, 128, 128)],
        (3, 32, 32),
        32,
    ),
}


def closest_widths(case: str, target: int) -> tuple[int, ...]:
    """The candidate diffusers widths whose parameter count is closest to rill's (presets change)."""
    _, candidates, shape, _ = CASES[case]
    sizes = {w: sum(p.numel() for p in peer_unet(shape[-1], shape[0], w).parameters()) for w in candidates}
    return min(sizes, key=lambda w: abs(sizes[w] - target))


TOKENS = 16  # text tokens per caption (MiniLM width 384)


def _rill_step(case: str, batch: int):
    from rill.model import DiffusionModel
    from rill.train import train_preset

    cfg = train_preset(CASES[case][0])
    model = DiffusionModel(cfg.model)
    model.train()
    opt = torch.optim.AdamW(model.net.parameters(), lr=1e-4)
    shape = CASES[case][2]
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((batch, *shape), generator=g) * 2 - 1
    cond = {
        "tokens": torch.randn(batch, TOKENS, 384, generator=g),
        "mask": torch.ones(batch, TOKENS, dtype=torch.bool),
        "pooled": torch.randn(batch, 384, generator=g),
    }

    def step() -> None:
        loss = model.loss(x0, cond, generator=g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step.describe = ", ".join(
        f"{k}={model.config.net_overrides.get(k)}" for k in ("channels", "channel_mult", "patch_size")
    )
    return step, sum(p.numel() for p in model.net.parameters())


def _peer_step(case: str, batch: int, widths: tuple[int, ...]):
    from diffusers import DDPMScheduler

    shape = CASES[case][2]
    unet = peer_unet(shape[-1], shape[0], widths).train()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((batch, *shape), generator=g) * 2 - 1
    tokens = torch.randn(batch, TOKENS, 384, generator=g)
    mask = torch.ones(batch, TOKENS, dtype=torch.bool)

    def step() -> None:
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g)
        pred = unet(
            sched.add_noise(x0, noise, t), t, encoder_hidden_states=tokens, encoder_attention_mask=mask
        ).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in unet.parameters())


def measure(case: str, seconds: float, round_s: float = 3.0) -> dict:
    batch = CASES[case][3]
    rill = _rill_step(case, batch)
    widths = closest_widths(case, rill[1])
    steps = {"rill": rill, "diffusers": _peer_step(case, batch, widths)}
    for fn, _ in steps.values():  # warm-up
        fn()
        fn()
    rates: dict[str, list[float]] = {k: [] for k in steps}
    t_end = time.time() + seconds * len(steps)
    while time.time() < t_end or min(len(v) for v in rates.values()) < 3:
        for name, (fn, _) in steps.items():
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < round_s:
                fn()
                n += 1
            rates[name].append(n * batch / (time.perf_counter() - t0))
    out = {
        name: {"params": steps[name][1], "images_per_s": statistics.median(r), "rounds": len(r)}
        for name, r in rates.items()
    }
    out["ratio"] = out["rill"]["images_per_s"] / out["diffusers"]["images_per_s"]
    out["batch"], out["shape"], out["diffusers"]["widths"] = batch, list(CASES[case][2]), list(widths)
    out["rill"]["net"] = rill[0].describe
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measuring budget per net and case")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="digits,shapes")
    ap.add_argument("--out", default=str(RESULTS / "train_throughput.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {case: measure(case, args.seconds) for case in args.cases.split(",")}
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# Training throughput: rill U-Net vs diffusers UNet2DConditionModel",
        "",
        f"Written by `python benchmarks/train_throughput.py --seconds {args.seconds:g}` "
        f"({args.threads} threads, "
        f"{os.cpu_count()} shared CPU cores, load average {load}). Forward + loss + backward + AdamW, "
        f"{TOKENS} text tokens of width 384; median of alternating rounds. A rill preset with patch_size p "
        "runs its U-Net on (H/p)x(W/p) patches, the diffusers UNet on the full-resolution grid.",
        "",
        "| data | net | parameters | batch | images/s |",
        "|---|---|---:|---:|---:|",
    ]
    for case, r in res.items():
        for name in ("rill", "diffusers"):
            label = (
                f"diffusers block_out_channels={tuple(r[name]['widths'])}"
                if name == "diffusers"
                else f"rill preset ({r[name]['net']})"
            )
            lines.append(
                f"| {case} {tuple(r['shape'])} | {label} | {r[name]['params']:,} | {r['batch']} | "
                f"{r[name]['images_per_s']:.0f} |"
            )
        lines.append(f"| | rill / diffusers | | | {r['ratio']:.2f}x |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({**res, "load": load, "threads": args.threads}, indent=2) + "\n"
    )
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
