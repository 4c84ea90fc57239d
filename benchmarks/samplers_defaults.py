"""rill's default sampler against diffusers' schedulers at their OWN shipped defaults, on exact mixtures.

    python -m benchmarks.samplers_defaults          # writes benchmarks/results/samplers_defaults.md

benchmarks/samplers.py compares every solver on rill's σ range [0.002, 80] (σ-matched). A diffusers user
instead gets the scheduler as shipped on Stable Diffusion's scaled-linear β table (0.00085, 0.012; σ from
≈ 14.6 down to ≈ 0.029, then 0). Each method here is scored against the exact probability-flow ODE solution
(scipy DOP853, rtol 1e-9) of the ODE it solves, from the same standard-normal draws: rill's from σ = 80, a
peer's from its own first σ. RMS endpoint error over the coordinates of 512 draws; mixtures
GaussianMixture.random(d, 8, seed=s) (the benchmark's d = 64, seed 0 first, then other draws).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import torch

from benchmarks._peer import make_scheduler, peer_steps, run_scheduler, scheduler_grid
from benchmarks.samplers import FastMixtureDenoiser, exact_endpoint, rms_error
from benchmarks.samplers_nets import SD_TABLE

RESULTS = Path(__file__).resolve().parent / "results"
NFES = [4, 5, 6, 8, 10, 12, 16, 25]
PEERS = [  # (label, _peer kind, config) as shipped, on the SD table
    ("DPM++ 2M (default)", "dpmpp", {}),
    ("DPM++ 2M Karras", "dpmpp", {"use_karras_sigmas": True}),
    ("DPM++ 3M", "dpmpp", {"solver_order": 3}),
    ("UniPC (default)", "unipc", {}),
    ("UniPC Karras", "unipc", {"use_karras_sigmas": True}),
    ("DEIS (default)", "deis", {}),
    ("Euler (default)", "euler", {}),
]
MIXTURES = [(64, 0), (64, 11), (64, 12), (16, 13), (2, 14)]  # (d, seed)


def run(dim: int, seed: int, nfes: list[int], samples: int) -> tuple[dict[str, list[float]], float]:
    import rill
    from rill.core.mixture import GaussianMixture

    gm = GaussianMixture.random(dim, 8, seed=seed)
    den = FastMixtureDenoiser(gm)
    z = torch.randn(samples, dim, generator=torch.Generator().manual_seed(1000 + seed), dtype=torch.float64)
    refs: dict[float, torch.Tensor] = {}

    def ref(sigma0: float) -> torch.Tensor:
        if sigma0 not in refs:
            refs[sigma0] = exact_endpoint(den, z * sigma0, sigma_max=sigma0)
        return refs[sigma0]

    rows = {"rill default (auto)": [rms_error(rill.sample(den, z, nfe=n), ref(80.0)) for n in nfes]}
    sigma0 = 0.0
    for label, kind, config in PEERS:
        errs = []
        for n in nfes:
            sched = make_scheduler(kind, peer_steps(kind, n), **SD_TABLE, **config)
            sigma0 = float(scheduler_grid(sched, kind)[0])
            x, calls = run_scheduler(sched, kind, den, z * sigma0)
            assert calls <= n
            errs.append(rms_error(x, ref(sigma0)))
        rows[label] = errs
    return rows, sigma0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--nfes", default=",".join(map(str, NFES)))
    ap.add_argument("--out", type=Path, default=RESULTS / "samplers_defaults.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    nfes = [int(v) for v in args.nfes.split(",")]
    t0 = time.perf_counter()
    when = f"{datetime.date.today()}, {platform.machine()}, 1 thread"
    md = ["# rill's default vs diffusers at its shipped defaults (exact mixtures)", "",
          f"`python -m benchmarks.samplers_defaults` ({when}).",
          "", __doc__.split("\n\n", 2)[2].strip(), ""]  # fmt: skip
    for dim, seed in MIXTURES:
        rows, sigma0 = run(dim, seed, nfes, args.samples)
        best = [min(rows[k][i] for k in rows if k != "rill default (auto)") for i in range(len(nfes))]
        head = "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |"
        md += [f"## d = {dim}, mixture seed {seed} (peers start at σ = {sigma0:.2f})", "", head,
               "|---|" + "---:|" * len(nfes)]  # fmt: skip
        md += [f"| {k} | " + " | ".join(f"{v:.4f}" for v in errs) + " |" for k, errs in rows.items()]
        ratios = [a / b for a, b in zip(rows["rill default (auto)"], best)]
        md += ["| **rill ÷ best peer** | " + " | ".join(f"**{r:.2f}×**" for r in ratios) + " |", ""]
        print(
            f"d={dim} seed={seed}: ratios " + " ".join(f"{n}:{r:.2f}" for n, r in zip(nfes, ratios)),
            flush=True,
        )
    md.append(f"Wall time {time.perf_counter() - t0:.0f} s.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
