"""Water: on 2-D data, the learned score field ∇log p_σ = (D(x; σ) − x)/σ² as streamlines over the noised
density at several σ, particles flowing down the probability-flow ODE, and the learned field's error against
the exact field of the data's Gaussian mixture."""

from __future__ import annotations

import io

import torch
from torch import Tensor

from ...core.grids import karras
from ._common import Inputs, View, lacks_points, lattice, nearest_mode_distance, pyplot, save_figure

__all__ = ["water", "WATER_SIGMAS", "score_ascent", "data_mixture", "points_denoiser"]

WATER_SIGMAS = (2.0, 1.0, 0.5, 0.2)
LIM = 3.5  # the plotted square [-LIM, LIM]²


def data_mixture(spec: str, n: int = 2000, std: float = 0.03):
    """The distribution of a `points:NAME` data set as a GaussianMixture: exact for gaussians8 (8 means on
    a circle of radius 2, std 0.15), else n data points each blurred by `std` (the field of the data itself,
    close to the true one for σ ≫ std)."""
    from ...core.mixture import GaussianMixture
    from ...data import load_dataset
    from ...data.points import GAUSSIANS8_CENTRES, GAUSSIANS8_STD

    if spec == "points:gaussians8":
        return GaussianMixture(torch.tensor(GAUSSIANS8_CENTRES), GAUSSIANS8_STD, torch.ones(8))
    data = load_dataset(spec, n=n, seed=0)
    return GaussianMixture(data.points.double(), std, torch.ones(len(data.points)))


@torch.no_grad()
def points_denoiser(model):
    """The unconditional 2-D denoiser of a points model, float32 in and out."""

    def d(x: Tensor, sigma: float) -> Tensor:
        s = torch.full((x.shape[0],), float(sigma))
        return model.denoiser(x.float(), s, None).float()

    return d


@torch.no_grad()
def score_ascent(denoise, x: Tensor, sigma: float, steps: int = 40, rate: float = 0.4) -> Tensor:
    """Follow the score uphill at fixed σ: x ← x + rate·σ²·∇log p_σ(x) = x + rate·(D(x; σ) − x), the path a
    streamline takes (water running downhill); ends at a mode of p_σ."""
    for _ in range(steps):
        x = x + rate * (denoise(x, sigma) - x)
    return x


def water(inp: Inputs) -> View:
    view = View(
        "water",
        "Water: the score field is rain running downhill into the sea",
        "The arrows are the model's score, the direction in which the noisy data grows denser; at large σ "
        "everything runs to the middle, at small σ each stream ends in one of the data's pools (the modes). "
        "The particles follow the probability-flow ODE from pure noise to data, and the error panel shows "
        "where the learned field departs from the exact one of the true distribution.",
    )
    if lacks_points(view, inp):
        return view
    plt = pyplot()
    mix, learned = inp.mixture, points_denoiser(inp.points)
    exact = lambda x, s: mix.denoise(x.double(), s).float()  # noqa: E731
    means = mix.means.float()
    xs, ys, grid = lattice(48, LIM)
    g = torch.Generator().manual_seed(inp.seed)
    numbers: dict = {
        "sigma": list(WATER_SIGMAS),
        "relative_score_error": [],
        "ascent_ends_near_exact": [],
        "ascent_ends_near_data_mode": [],
    }

    fig, axes = plt.subplots(2, len(WATER_SIGMAS), figsize=(4 * len(WATER_SIGMAS), 8))
    for k, sigma in enumerate(WATER_SIGMAS):
        density = mix.log_prob(grid.double(), sigma).exp().reshape(len(ys), len(xs))
        d_learned, d_exact = learned(grid, sigma), exact(grid, sigma)
        u, v = ((d_learned - grid) / sigma**2).T.reshape(2, len(ys), len(xs))
        ax = axes[0, k]
        ax.imshow(density.numpy(), extent=(-LIM, LIM, -LIM, LIM), origin="lower", cmap="Blues")
        ax.streamplot(
            xs.numpy(),
            ys.numpy(),
            u.numpy(),
            v.numpy(),
            color="#444444",
            density=1.1,
            linewidth=0.7,
            arrowsize=0.8,
        )
        ax.set_title(f"learned score at σ = {sigma}")
        # the numbers: error on samples of p_σ, and where streamlines started there end
        x = mix.sample(1024, g, sigma=sigma).float()
        s_l, s_e = (learned(x, sigma) - x) / sigma**2, (exact(x, sigma) - x) / sigma**2
        rel = float((s_l - s_e).pow(2).sum(1).mean() / s_e.pow(2).sum(1).mean())
        start = x[:256]
        end_l, end_e = score_ascent(learned, start, sigma), score_ascent(exact, start, sigma)
        numbers["relative_score_error"].append(round(rel, 4))
        numbers["ascent_ends_near_exact"].append(
            round(float(((end_l - end_e).norm(dim=1) < 0.25).float().mean()), 3)
        )
        near_mode = nearest_mode_distance(end_l, means) < 0.3
        numbers["ascent_ends_near_data_mode"].append(round(float(near_mode.float().mean()), 3))
        err = (d_learned - d_exact).norm(dim=1).reshape(len(ys), len(xs)) / sigma  # |score error|·σ
        ax = axes[1, k]
        im = ax.imshow(err.numpy(), extent=(-LIM, LIM, -LIM, LIM), origin="lower", cmap="magma", vmin=0)
        ax.contour(xs.numpy(), ys.numpy(), density.numpy(), levels=4, colors="white", linewidths=0.5)
        ax.set_title(f"σ·|learned − exact score|, rel. error {rel:.3f}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes.flat:
        ax.set_xlim(-LIM, LIM)
        ax.set_ylim(-LIM, LIM)
        ax.set_aspect("equal")
    view.figures.append(save_figure(fig, inp.out, "water-field.png"))
    numbers["particles"] = _particles(inp, learned, mix, means, g)
    view.figures.append("water-particles.gif")
    view.numbers = numbers
    return view


def _particles(inp: Inputs, learned, mix, means: Tensor, g: torch.Generator, n: int = 300) -> dict:
    """Particles from N(0, σ_max²) down the PF-ODE (Euler, dx = (x − D)/σ dσ) on a Karras grid; a GIF."""
    from PIL import Image

    plt = pyplot()
    sigmas = karras(24, 0.01, 5.0).tolist()
    x = torch.randn(n, 2, generator=g) * sigmas[0]
    xs, ys, grid = lattice(40, LIM)
    frames = []

    def frame(s: float) -> None:
        density = mix.log_prob(grid.double(), max(s, 0.01)).exp().reshape(len(ys), len(xs))
        fig, ax = plt.subplots(figsize=(3.6, 3.6))
        ax.imshow(density.numpy(), extent=(-LIM, LIM, -LIM, LIM), origin="lower", cmap="Blues")
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=4, c="#c0392b")
        ax.set_xlim(-LIM, LIM)
        ax.set_ylim(-LIM, LIM)
        ax.set_title(f"σ = {s:.3g}" if s else "σ = 0: samples")
        ax.set_xticks([])
        ax.set_yticks([])
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=60)
        plt.close(fig)
        frames.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        if i % 2 == 0:
            frame(s)
        # Euler step of the PF-ODE (EDM Eq. 3 with σ(t) = t)
        d = (x - learned(x, s)) / s
        x = x + (s_next - s) * d
    frame(0.0)
    durations = [120] * (len(frames) - 1) + [1200]
    frames[0].save(
        inp.out / "water-particles.gif", save_all=True, append_images=frames[1:], duration=durations, loop=0
    )
    dist = nearest_mode_distance(x, means)
    return {
        "count": n,
        "steps": len(sigmas) - 1,
        "median_distance_to_mode": round(float(dist.median()), 4),
        "share_within_0.45_of_a_mode": round(float((dist < 0.45).float().mean()), 3),
    }
