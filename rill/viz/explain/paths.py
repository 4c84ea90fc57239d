"""Paths: the same starting points taken to data by the probability-flow ODE, by an SDE (ancestral steps), by
annealed Langevin dynamics (score step plus injected noise), and by Langevin without the noise, which
collapses every path onto a peak of the density."""

from __future__ import annotations

import torch
from torch import Tensor

from ...core.grids import karras
from ...samplers import sample
from ._common import (
    Inputs,
    View,
    lacks_points,
    lattice,
    modes_reached,
    pyplot,
    save_figure,
    spread_around_modes,
)
from .water import LIM

__all__ = ["paths", "noise_free_langevin", "LANGEVIN"]

# annealed Langevin as rill's "langevin" sampler runs it without a predictor (Song & Ermon 2019): at every σ
# of the grid, N_CORRECTOR steps x ← x + ε·score + sqrt(2ε)·z with ε = min(2·snr², 1)·σ² (step_rule "fixed")
LANGEVIN = {"predictor": "none", "step_rule": "fixed", "n_corrector": 4, "snr": 0.5}
STEPS = 24  # σ levels of every method's grid
SIGMA_MIN, SIGMA_MAX = 0.01, 5.0


@torch.no_grad()
def noise_free_langevin(denoiser, x: Tensor, sigmas: Tensor, n_corrector: int, snr: float) -> Tensor:
    """The "langevin" sampler's walk with the noise left out: x ← x + ε·score, annealed over `sigmas`
    (ending in 0, where x ← D(x; σ) as every sampler's last step). Plain gradient ascent on log p_σ."""
    s = sigmas.tolist()
    for sigma, sigma_next in zip(s[:-1], s[1:]):
        if sigma_next == 0:
            return denoiser(x, torch.full((len(x),), sigma), None)
        eps = min(2 * snr**2, 1.0) * sigma_next**2
        for _ in range(n_corrector):
            score = (denoiser(x, torch.full((len(x),), sigma_next), None) - x) / sigma_next**2
            x = x + eps * score
    return x


def _walk(method: str, den, x: Tensor, sigmas: Tensor, gens) -> tuple[Tensor, list[Tensor]]:
    trail: list[Tensor] = [x.clone()]

    def record(step, xt, sigma, x0_hat):
        if step > 0:
            trail.append(xt.clone())

    if method == "Langevin, no noise":
        out = noise_free_langevin(den, x, sigmas, LANGEVIN["n_corrector"], LANGEVIN["snr"])
        return out, [x, out]
    sampler, opts = {
        "ODE (Heun)": ("heun", {}),
        "SDE (Euler ancestral)": ("euler_ancestral", {}),
        "Langevin": ("langevin", LANGEVIN),
    }[method]
    nfe = 10_000  # the grid fixes the steps; the budget only has to be large enough
    out = sample(
        den,
        x / SIGMA_MAX,
        nfe=nfe,
        sampler=sampler,
        grid=sigmas,
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        generator=gens,
        callback=record,
        **opts,
    )
    trail.append(out)
    return out, trail


METHODS = ("ODE (Heun)", "SDE (Euler ancestral)", "Langevin", "Langevin, no noise")


def paths(inp: Inputs, n: int = 512, shown: int = 24) -> View:
    view = View(
        "paths",
        "Paths: the same starts, deterministic and random walks",
        "Every method starts from the same noise: the ODE follows the flow exactly, the SDE and Langevin add "
        "fresh noise at each step and wander, yet all three "
        "end spread like the data. Langevin with the noise "
        "left out is plain hill climbing: the paths collapse onto "
        "peaks (at large σ onto the single peak of the "
        "blurred density, so most of them onto one mode), and the spread of the data is lost.",
    )
    if lacks_points(view, inp):
        return view
    plt = pyplot()
    mix = inp.mixture
    den = lambda x, s, cond=None: inp.points.denoiser(x.float(), s, None).float()  # noqa: E731
    sigmas = karras(STEPS, SIGMA_MIN, SIGMA_MAX)
    gens = [torch.Generator().manual_seed(inp.seed + k) for k in range(n)]
    x0 = torch.stack([torch.randn(2, generator=gg) for gg in gens]) * SIGMA_MAX
    data = mix.sample(4096, torch.Generator().manual_seed(inp.seed), sigma=0.0).float()
    numbers = {
        "data_spread": round(spread_around_modes(data, mix.means.float()), 4),
        "spread": {},
        "modes_reached": {},
        "modes": len(mix.means),
    }
    fig, axes = plt.subplots(1, len(METHODS) + 1, figsize=(4 * (len(METHODS) + 1), 4))
    density = None
    for ax, method in zip(axes, METHODS):
        gs = [torch.Generator().manual_seed(10_000 + inp.seed + k) for k in range(n)]
        out, trail = _walk(method, den, x0.clone(), sigmas, gs)
        numbers["spread"][method] = round(spread_around_modes(out, mix.means.float()), 4)
        numbers["modes_reached"][method] = modes_reached(out, mix.means.float())
        if density is None:
            xs, ys, grid = lattice(60, LIM)
            density = mix.log_prob(grid.double(), 0.05).exp().reshape(len(ys), len(xs))
        ax.imshow(density.numpy(), extent=(-LIM, LIM, -LIM, LIM), origin="lower", cmap="Blues")
        path = torch.stack(trail)[:, :shown]  # (T, shown, 2)
        for k in range(shown):
            ax.plot(
                path[:, k, 0].clamp(-LIM, LIM).numpy(),
                path[:, k, 1].clamp(-LIM, LIM).numpy(),
                lw=0.6,
                color="#555555",
            )
        ax.scatter(out[:, 0].numpy(), out[:, 1].numpy(), s=2, c="#c0392b")
        ax.set_xlim(-LIM, LIM)
        ax.set_ylim(-LIM, LIM)
        ax.set_aspect("equal")
        reached = numbers["modes_reached"][method]
        ax.set_title(f"{method}\nspread {numbers['spread'][method]:.3f}, {reached} modes reached")
    ax = axes[-1]
    names = list(numbers["spread"])
    ax.barh(
        names + ["data"], [numbers["spread"][m] for m in names] + [numbers["data_spread"]], color="#3b75af"
    )
    ax.set_xlabel("RMS distance to the centre of its mode's cluster")
    ax.set_title("spread around the modes")
    view.figures.append(save_figure(fig, inp.out, "paths.png"))
    numbers.update(steps=STEPS, sigma_max=SIGMA_MAX, samples=n, langevin=LANGEVIN)
    view.numbers = numbers
    return view
