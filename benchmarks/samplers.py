"""Sampler benchmark: rill's samplers and grids against diffusers' schedulers on exact Gaussian mixtures.

    python -m benchmarks.samplers    # ~10 min on 2 busy cores; writes benchmarks/results/samplers.{md,png}

For every NFE (= denoiser calls; Heun spends 2 per step, 1 on its last) and sampler, from the same noise:
(a) RMS endpoint error against the exact probability-flow ODE solution (scipy DOP853, rtol 1e-9, in log σ
    from σ_max = 80 to σ_min = 0.002, then the final denoise D(x; σ_min): the end convention of every grid
    ending [σ_min, 0], rill's and diffusers' alike; DEIS, stopping at σ_min without it, is scored the same);
(b) sliced 2-Wasserstein distance to fresh true samples, with its noise floor (two independent true sets);
(c) the sampler's own time per denoiser call with a trivial model (a fixed zero tensor; 1024×64 float32).
diffusers is driven through benchmarks/_peer.py with the exact model evaluated at the σ its solver uses, on a
VP table whose σ spans the same [0.002, 80] (so its Karras grids equal rill's).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
NFES = [3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50]
RESULTS = Path(__file__).resolve().parent / "results"


# --- exact references ---
class FastMixtureDenoiser:
    """The exact D(x; σ) of a diagonal rill.toy.GaussianMixture, computed with (B, d) × (d, K) products
    instead of (B, K, d) broadcasts (~6× faster; the benchmark and the grid design make thousands of solver
    runs). Same formula: log r_k = log w_k − ½ Σ_d [(x − μ_k)²/v_kd + log(2π v_kd)],  D = Σ_k r_k [μ_k +
    s_k²/v_k·(x − μ_k)],
    v = s² + σ². `check` returns the largest difference to GaussianMixture.denoise."""

    def __init__(self, gm):
        self.gm, self.mu, self.s2, self.logw = gm, gm.means, gm.stds**2, gm.weights.log()

    def __call__(self, x: Tensor, sigma, cond=None) -> Tensor:
        sig2 = float(sigma.flatten()[0] if isinstance(sigma, Tensor) else sigma) ** 2
        iv = 1.0 / (self.s2 + sig2)  # (K, d)
        xf = x.reshape(x.shape[0], -1).to(torch.float64)
        logp = (
            -0.5
            * (
                (xf**2) @ iv.T
                - 2 * xf @ (self.mu * iv).T
                + ((self.mu**2) * iv).sum(1)
                - iv.log().sum(1)
                + self.mu.shape[1] * math.log(2 * math.pi)
            )
            + self.logw
        )
        r = torch.softmax(logp, dim=1)  # (B, K)
        a = self.s2 * iv  # s_k²/v_k, (K, d)
        return (r @ (self.mu * (1 - a)) + xf * (r @ a)).reshape(x.shape).to(x.dtype)

    def check(self, x: Tensor) -> float:
        return max(float((self(x, s) - self.gm.denoise(x, s)).abs().max()) for s in (0.002, 0.3, 5.0, 80.0))


def exact_endpoint(
    denoiser,
    x_start: Tensor,
    sigma_max: float = SIGMA_MAX,
    sigma_min: float = SIGMA_MIN,
    rtol: float = 1e-9,
    atol: float = 1e-9,
) -> Tensor:
    """D(x(σ_min); σ_min), x(σ) solving the PF-ODE from x(σ_max) = x_start, float64.

    In s = log σ the ODE dx/dσ = (x − D(x; σ))/σ (EDM Eq. 3) reads dx/ds = x − D(x; e^s); DOP853 (explicit 8th
    order) integrates all samples as one system."""
    shape = x_start.shape

    def rhs(s: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).view(shape)
        return (x - denoiser(x, math.exp(s))).reshape(-1).numpy()

    sol = solve_ivp(
        rhs,
        (math.log(sigma_max), math.log(sigma_min)),
        x_start.double().reshape(-1).numpy(),
        method="DOP853",
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:
        raise RuntimeError(f"reference PF-ODE solve failed: {sol.message}")
    return denoiser(torch.from_numpy(sol.y[:, -1].copy()).view(shape), sigma_min)


def rms_error(x: Tensor, ref: Tensor) -> float:
    """sqrt(mean((x − ref)²)) over samples and coordinates."""
    return float(((x.double() - ref) ** 2).mean().sqrt())


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance of two equal-size sample sets (B, d): RMS over random unit directions of
    the 1-D W2 between projections (sorted matching)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa, pb = (a.double() @ dirs).sort(dim=0).values, (b.double() @ dirs).sort(dim=0).values
    return float(((pa - pb) ** 2).mean().sqrt())


# --- what is compared ---
RILL = [  # (label, sampler, options); every deterministic rill sampler, each on "karras" and "rill" grids
    ("euler", "euler", {}),
    ("ddim", "ddim", {}),
    ("heun", "heun", {}),
    ("dpmpp_2m", "dpmpp_2m", {}),
    ("dpmpp_3m", "dpmpp_3m", {}),
    ("unipc", "unipc", {}),
    ("unipc(order=3)", "unipc", {"order": 3}),
    ("unipc(order=3, bh1)", "unipc", {"order": 3, "variant": "bh1"}),
    ("ipndm", "ipndm", {}),
]
PEERS = [  # (label, _peer kind, scheduler config); "logsnr" = default spacing on the log-uniform σ table
    ("DPM++ 2M Karras", "dpmpp", {"use_karras_sigmas": True}),
    ("DPM++ 3M Karras", "dpmpp", {"use_karras_sigmas": True, "solver_order": 3}),
    ("UniPC-2 Karras", "unipc", {"use_karras_sigmas": True}),
    ("UniPC-3 Karras", "unipc", {"use_karras_sigmas": True, "solver_order": 3}),
    ("UniPC-3 logSNR", "unipc", {"solver_order": 3}),
    ("DEIS-2 Karras", "deis", {"use_karras_sigmas": True}),
    ("DEIS-3 Karras", "deis", {"use_karras_sigmas": True, "solver_order": 3}),
    ("DEIS-3 logSNR", "deis", {"solver_order": 3}),
    ("Euler Karras", "euler", {"use_karras_sigmas": True}),
    ("Heun Karras", "heun", {"use_karras_sigmas": True}),
    ("EDM DPM++ 2M", "edm_dpmpp", {}),
    ("EDM DPM++ 3M", "edm_dpmpp", {"solver_order": 3}),
]


def run_rill(
    sampler: str, options: dict, grid: str | None, nfe: int, denoiser, z: Tensor
) -> tuple[Tensor, int]:
    import rill

    calls = [0]

    def counted(x, sigma, cond=None):
        calls[0] += 1
        return denoiser(x, sigma, cond)

    out = rill.sample(
        counted, z, nfe=nfe, sampler=sampler, grid=grid, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, **options
    )
    return out, calls[0]


# --- the three measurements ---
def accuracy(dim: int, samples: int, seed: int, nfes: list[int]) -> tuple[list[dict], float, float]:
    """Rows {label, family, grid, nfe, calls, rms, sw}, the SW noise floor, and the reference time."""
    from benchmarks._peer import run_peer
    from rill.core.mixture import GaussianMixture

    gm = GaussianMixture.random(dim, 8, std_range=(0.03, 0.25), seed=seed)
    den = FastMixtureDenoiser(gm)
    g = torch.Generator().manual_seed(1000 + seed)
    z = torch.randn(samples, dim, generator=g, dtype=torch.float64)
    if den.check(z * 3) > 1e-10:
        raise AssertionError("FastMixtureDenoiser disagrees with GaussianMixture.denoise")
    t0 = time.perf_counter()
    ref = exact_endpoint(den, z * SIGMA_MAX)
    t_ref = time.perf_counter() - t0
    true_a, true_b = gm.sample(samples, generator=g), gm.sample(samples, generator=g)
    floor = sliced_wasserstein(true_a, true_b)
    rows = []

    def add(label, family, grid, nfe, out, calls):
        rows.append(
            {
                "label": label,
                "family": family,
                "grid": grid,
                "nfe": nfe,
                "calls": calls,
                "rms": rms_error(out, ref),
                "sw": sliced_wasserstein(out, true_a),
            }
        )

    for nfe in nfes:
        for label, sampler, options in RILL:
            for grid in ("karras", "rill"):
                add(label, "rill", grid, nfe, *run_rill(sampler, options, grid, nfe, den, z))
        add("auto", "rill", "auto", nfe, *run_rill("auto", {}, None, nfe, den, z))
        for label, kind, config in PEERS:
            add(label, "diffusers", "", nfe, *run_peer(kind, config, nfe, den, z))
    return rows, floor, t_ref


def overhead(batch: int = 1024, dim: int = 64, nfe: int = 50, repeats: int = 5) -> dict[str, float]:
    """µs of sampler work per denoiser call with a model that returns a fixed zero tensor (float32): the best
    of
    `repeats` rounds, each round timing every sampler once (interleaved, so all see the same machine load)."""
    from benchmarks._peer import make_scheduler, peer_config, peer_steps, run_scheduler
    from rill.samplers import get_sampler, resolve, sigmas_for

    zeros = torch.zeros(batch, dim)
    z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(0))
    count = [0]

    def trivial(x, sigma, cond=None):
        count[0] += 1
        return zeros

    def rill_run(sampler: str, options: dict):
        name, opts, grid = resolve(sampler, nfe, None if sampler == "auto" else "karras", options)
        sig = sigmas_for(name, nfe, SIGMA_MIN, SIGMA_MAX, grid, **opts)
        fn = get_sampler(name)

        def run() -> tuple[float, int]:
            count[0] = 0
            t0 = time.perf_counter()
            fn(trivial, z * float(sig[0]), sig, **opts)
            return time.perf_counter() - t0, count[0]

        return run

    def peer_run(kind: str, config: dict):
        def run() -> tuple[float, int]:
            sched = make_scheduler(
                kind, peer_steps(kind, nfe), **peer_config(kind, config)
            )  # set-up not timed
            t0 = time.perf_counter()
            calls = run_scheduler(sched, kind, None, z * SIGMA_MAX, model=lambda x_in, s: zeros)[1]
            return time.perf_counter() - t0, calls

        return run

    runs = {label: rill_run(s, o) for label, s, o in [*RILL, ("auto", "auto", {})]}
    runs.update({label: peer_run(kind, config) for label, kind, config in PEERS})
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repeats):
        for label, run in runs.items():
            seconds, calls = run()
            best[label] = min(best[label], 1e6 * seconds / calls)
    return best


# --- report ---
def _best(rows: list[dict], family: str, nfe: int) -> dict:
    return min((r for r in rows if r["family"] == family and r["nfe"] == nfe), key=lambda r: r["rms"])


def _name(r: dict) -> str:
    return f"{r['label']} [{r['grid']}]" if r["family"] == "rill" and r["grid"] != "auto" else r["label"]


def error_table(rows: list[dict], nfes: list[int], key: str = "rms") -> list[str]:
    head = "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |"
    lines = [head, "|" + "---|" * (len(nfes) + 1)]
    names = list(dict.fromkeys(_name(r) for r in rows))
    for name in names:
        cells = []
        for n in nfes:
            r = next(r for r in rows if _name(r) == name and r["nfe"] == n)
            best = r is _best(rows, r["family"], n)
            cell = f"{r[key]:.4f}" + (f" ({r['calls']})" if r["calls"] != n else "")
            cells.append(f"**{cell}**" if best else cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot(results: dict, nfes: list[int], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5), squeeze=False)
    for ax, (dim, (rows, _floor, _t)) in zip(axes[0], results.items()):
        for fam, style in (("diffusers", "--"), ("rill", "-")):
            for name in dict.fromkeys(_name(r) for r in rows if r["family"] == fam):
                if fam == "rill" and "[rill]" not in name and name != "auto":
                    continue  # rill on Karras is in the table; the plot shows rill's grid and the auto choice
                pts = sorted((r["calls"], r["rms"]) for r in rows if _name(r) == name)
                lw = 2.5 if name == "auto" else 1.0
                ax.plot(
                    *zip(*pts),
                    style,
                    lw=lw,
                    marker="o",
                    ms=3,
                    label=name,
                    color="k" if name == "auto" else None,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(nfes)
        ax.set_xticklabels(nfes)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("denoiser calls (NFE)")
        ax.set_ylabel("RMS endpoint error vs exact PF-ODE")
        ax.set_title(f"d = {dim}, 8 components, stds 0.03–0.25")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=1024, help="samples per mixture (d = 64; d = 2 uses 4×)")
    p.add_argument("--nfe", type=int, nargs="+", default=NFES)
    p.add_argument("--seed", type=int, default=0, help="mixture seed")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (≤ 2; on the shared 2-core box, 2 threads made some runs 70× slower)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import diffusers
    import scipy

    import rill

    t_start = time.perf_counter()
    results = {}
    for dim, samples in ((2, 4 * args.samples), (64, args.samples)):
        results[dim] = accuracy(dim, samples, args.seed, args.nfe)
        print(f"d={dim}: done ({time.perf_counter() - t_start:.0f} s, reference {results[dim][2]:.1f} s)")
    ovh = overhead()
    wall = time.perf_counter() - t_start
    md = [
        "# Sampler benchmark: rill vs diffusers on exact Gaussian mixtures",
        "",
        f"Command: `python -m benchmarks.samplers{'' if argv is None else ' ' + ' '.join(argv)}`  ",
        f"Date: {datetime.date.today()}, machine: {platform.machine()} {platform.processor() or ''} "
        f"({torch.get_num_threads()} torch threads, shared 2-core box), wall time {wall:.0f} s  ",
        f"Versions: rill {rill.__version__}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        "NFE = denoiser calls allowed; a cell shows the calls actually made in parentheses when fewer "
        "(Heun). Bold: the best of its family (rill / diffusers) at that NFE.",
        "",
    ]
    for dim, (rows, floor, t_ref) in results.items():
        md += [
            f"## d = {dim}: RMS endpoint error (exact references: {t_ref:.0f} s of DOP853)",
            "",
            *error_table(rows, args.nfe),
            "",
            f"## d = {dim}: sliced W2 to fresh true samples (noise floor {floor:.4f})",
            "",
            *error_table(rows, args.nfe, "sw"),
            "",
        ]
    md += [
        "## Summary: best of each family",
        "",
        "| d | NFE | rill best | error | diffusers best | error | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for dim, (rows, _f, _t) in results.items():
        for n in args.nfe:
            a, b = _best(rows, "rill", n), _best(rows, "diffusers", n)
            md.append(
                f"| {dim} | {n} | {_name(a)} | {a['rms']:.4f} | {b['label']} | {b['rms']:.4f} | "
                f"{a['rms'] / b['rms']:.2f} |"
            )
    md += [
        "",
        "## Sampler overhead per denoiser call (trivial model, 1024×64 float32, 50 calls, best of 5)",
        "",
        "| sampler | µs / call |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in ovh.items()],
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "samplers.md").write_text("\n".join(md))
    plot(results, args.nfe, args.out / "samplers.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
