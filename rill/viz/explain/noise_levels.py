"""Noise levels: σ, ᾱ, SNR and log-SNR per step of every σ grid, where each sampler spends its denoiser calls,
and the model's loss per σ bucket on real data (plus the run's logged loss when the model is a run folder)."""

from __future__ import annotations

import csv
import math

import torch

from ...core.grids import GRIDS, make_grid, vp_timesteps
from ...core.schedules import VPSchedule
from ...core.sigma import sigma_to_alpha_bar, sigma_to_logsnr
from ...inference.generate import sigma_range
from ...samplers import sample
from ._common import Inputs, View, pyplot, save_figure

__all__ = ["noise_levels", "grid_table", "budget_by_band", "loss_per_sigma", "BUDGET_SAMPLERS", "LOSS_SIGMAS"]

BUDGET_SAMPLERS = ("auto", "euler", "heun", "dpmpp_2m")
BANDS = (
    ("σ > 20", 20.0, math.inf),
    ("2 – 20", 2.0, 20.0),
    ("0.3 – 2", 0.3, 2.0),
    ("0.05 – 0.3", 0.05, 0.3),
    ("σ < 0.05", 0.0, 0.05),
)
LOSS_SIGMAS = tuple(round(0.005 * 10 ** (k * 4 / 11), 4) for k in range(12))  # 0.005 … 50, log-spaced


def grid_table(steps: int, sigma_min: float, sigma_max: float) -> dict[str, list[float]]:
    """σ per step (the final 0 left out) of every grid in GRIDS and of two VP ("DDPM") timestep grids."""
    out = {name: make_grid(name, steps, sigma_min, sigma_max)[:-1].tolist() for name in GRIDS}
    for kind in ("linear", "cosine"):
        out[f"vp-{kind}"] = vp_timesteps(steps, VPSchedule.make(kind))[:-1].tolist()
    return out


def budget_by_band(sampler: str, nfe: int, sigma_min: float, sigma_max: float) -> list[int]:
    """Denoiser calls per σ band (BANDS) that `sampler` makes with a budget of `nfe` calls."""
    seen: list[float] = []

    def counting(x, sigma, cond=None):  # D = 0, the denoiser of data at the origin: only σ matters here
        seen.append(float(sigma.flatten()[0]))
        return torch.zeros_like(x)

    sample(
        counting,
        torch.zeros(1, 2),
        nfe=nfe,
        sampler=sampler,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        generator=[torch.Generator().manual_seed(0)],
    )
    return [sum(lo <= s < hi for s in seen) for _, lo, hi in BANDS]


@torch.no_grad()
def loss_per_sigma(model, data, n: int = 32, seed: int = 0) -> dict[str, list[float]]:
    """On n real samples: the x̂0 error E|D(x0 + σn; σ) − x0|² per LOSS_SIGMAS, and the EDM-weighted loss
    λ(σ)·error with λ = (σ² + σ_d²)/(σ·σ_d)² (Karras et al. 2022, Eq. 8), which is 1 where the model only
    guesses the mean."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(data), generator=g)[:n].tolist()
    x0 = torch.stack([torch.as_tensor(data[i][0]) for i in index]).float().to(model.device)
    cond = model.encode([str(data[i][1]) for i in index]) if model.conditional else None
    sd = float(model.config.sigma_data)
    mse, weighted = [], []
    for sigma in LOSS_SIGMAS:
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        s = torch.full((len(x0),), sigma, device=x0.device)
        err = float((model.denoiser(x0 + sigma * noise, s, cond) - x0).pow(2).mean())
        mse.append(round(err, 6))
        weighted.append(round(err * (sigma**2 + sd**2) / (sigma * sd) ** 2, 4))
    return {"sigma": list(LOSS_SIGMAS), "x0_mse": mse, "edm_weighted_loss": weighted, "samples": len(index)}


def _read_log(path) -> tuple[list[int], list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def noise_levels(inp: Inputs, steps: int = 16) -> View:
    view = View(
        "noise_levels",
        "Noise levels: signal-to-noise falls along the way",
        "Every grid walks σ from large to small, which "
        "is the signal-to-noise ratio 1/σ² rising from almost 0 "
        "to very large; grids differ in where they place "
        "their steps, and samplers in how many denoiser calls "
        "they spend in each band of σ. The loss per σ bucket shows where the model is good (small σ: almost "
        "perfect) and where it can only guess the average (large σ).",
    )
    plt = pyplot()
    lo, hi = sigma_range(inp.model)
    table = grid_table(steps, lo, hi)
    budget = {s: budget_by_band(s, inp.nfe, lo, hi) for s in BUDGET_SAMPLERS}
    numbers: dict = {"steps": steps, "sigma_min": lo, "sigma_max": hi, "grids": {}}
    for name, sig in table.items():
        numbers["grids"][name] = {
            "sigma": [round(s, 4) for s in sig],
            "log_snr": [round(float(sigma_to_logsnr(torch.tensor(s))), 3) for s in sig],
        }
    numbers["calls_per_band"] = {"bands": [b[0] for b in BANDS], "nfe": inp.nfe, **budget}

    fig, axes = plt.subplots(1, 5, figsize=(22, 3.8))
    for name, sig in table.items():
        s = torch.tensor(sig, dtype=torch.float64)
        axes[0].semilogy(s.numpy(), ".-", label=name)
        axes[1].plot(sigma_to_alpha_bar(s).numpy(), ".-")
        axes[2].semilogy((1 / s**2).numpy(), ".-")
        axes[3].plot(sigma_to_logsnr(s).numpy(), ".-")
    for ax, label in zip(axes[:4], ("σ", "ᾱ = 1/(1+σ²)", "SNR = 1/σ²", "log-SNR λ = −2 log σ")):
        ax.set_xlabel("step")
        ax.set_title(label)
    axes[0].legend(fontsize=7)
    left = [0] * len(BUDGET_SAMPLERS)
    for b, (band, _, _) in enumerate(BANDS):
        counts = [budget[s][b] for s in BUDGET_SAMPLERS]
        axes[4].barh(BUDGET_SAMPLERS, counts, left=left, label=band)
        left = [a + c for a, c in zip(left, counts)]
    axes[4].set_title(f"denoiser calls per σ band (nfe {inp.nfe})")
    axes[4].legend(fontsize=7)
    view.figures.append(save_figure(fig, inp.out, "noise-levels.png"))

    data = inp.data
    if data is None and getattr(inp.model.config, "dataset", None):
        try:
            from ...data import load_dataset

            data = load_dataset(inp.model.config.dataset)
        except (ValueError, ImportError, OSError) as e:
            numbers["loss_note"] = f"no real data for the loss per σ: {e}"
    have_log = inp.log_csv is not None and inp.log_csv.is_file()
    if data is not None or have_log:
        fig, axes = plt.subplots(1, 2 if have_log else 1, figsize=(10 if have_log else 5, 3.6), squeeze=False)
        if data is not None:
            loss = loss_per_sigma(inp.model, data, seed=inp.seed)
            numbers["loss_per_sigma"] = loss
            ax = axes[0, 0]
            ax.loglog(loss["sigma"], loss["edm_weighted_loss"], "o-", label="EDM-weighted loss")
            ax.loglog(loss["sigma"], loss["x0_mse"], "s--", label="x̂0 mean squared error")
            ax.set_xlabel("σ")
            ax.set_title(f"loss per σ bucket ({loss['samples']} real samples)")
            ax.legend()
        if have_log:
            log_steps, log_loss = _read_log(inp.log_csv)
            numbers["run_log"] = {
                "steps": log_steps[-1] if log_steps else 0,
                "first_loss": log_loss[0] if log_loss else None,
                "last_loss": log_loss[-1] if log_loss else None,
            }
            ax = axes[0, -1]
            ax.plot(log_steps, log_loss)
            ax.set_xlabel("training step")
            ax.set_title("training loss (log.csv, mean over the training σ)")
        view.figures.append(save_figure(fig, inp.out, "loss-per-sigma.png"))
    view.numbers = numbers
    return view
