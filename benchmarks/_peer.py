"""Drive diffusers' schedulers with rill's exact σ-space denoiser (shared by the benchmark and the conformance
test).

Conventions bridged here (diffusers 0.42.1, read from diffusers/schedulers/):
- State. DDIM / DPM-Solver / UniPC / DEIS keep the VP sample x_vp = x / sqrt(1 + σ²); Euler / Heun keep the VE
  x and divide by sqrt(1 + σ²) in `scale_model_input`; EDM-DPM keeps the VE x and feeds the net c_in·x. The
  start state is converted from rill's x at σ_0 and the result back from the scheduler's last σ.
- Model. An ε-prediction model, ε(x_in; σ) = (x − D(x; σ)) / σ with x = x_in·sqrt(1 + σ²) (EDM-DPM: the EDM
  "epsilon" output F = (D − c_skip·x) / c_out). σ is the σ the scheduler itself uses for that call
  (`scheduler.sigmas[call]`; DDIM: σ of its integer timestep). diffusers feeds the network *rounded* integer
  timesteps on Karras grids (DPM-Solver, UniPC, DEIS), so a model that decoded σ from t would be evaluated at
  a different σ than the solver assumes; `timestep_gap` measures that gap so tests can state it.
- Training table. diffusers derives σ grids from a 1000-step ᾱ table. `log_uniform_betas(σ_min, σ_max)` makes
  a table whose σ_t is uniform in log σ from σ_min (t = 0) to σ_max (t = 999), so every scheduler's Karras
  grid spans the same [σ_min, σ_max] as rill's (float32 betas put σ_min within ~0.5 % of the request).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "deis": "DEISMultistepScheduler",
    "edm_dpmpp": "EDMDPMSolverMultistepScheduler",
}
_VE_STATE = {"euler", "heun", "edm_dpmpp"}  # sample kept in VE coordinates


def log_uniform_betas(
    sigma_min: float = 0.002, sigma_max: float = 80.0, num_timesteps: int = 1000
) -> np.ndarray:
    """β_t of a discrete VP table with σ_t = exp(linspace(log σ_min, log σ_max, T)): ᾱ_t = 1 / (1 + σ_t²)."""
    sig = np.exp(np.linspace(math.log(sigma_min), math.log(sigma_max), num_timesteps))
    ac = 1.0 / (1.0 + sig**2)
    return 1.0 - ac / np.concatenate([[1.0], ac[:-1]])


def make_scheduler(kind: str, steps: int, **config):
    """A diffusers scheduler of `kind` (see SCHEDULERS) with `config`, after set_timesteps(steps)."""
    import diffusers

    if kind not in SCHEDULERS:
        raise ValueError(f"unknown peer scheduler {kind!r}; choose one of {sorted(SCHEDULERS)}")
    sched = getattr(diffusers, SCHEDULERS[kind])(**config)
    sched.set_timesteps(steps)
    return sched


def _ddim_sigmas(sched) -> tuple[list[float], list[float]]:
    """(σ at each model call, σ each step lands on) for DDIMScheduler: it steps t → t − T//n whatever the
    spacing, and to ᾱ = 1 (σ = 0) below t = 0 when set_alpha_to_one (else to ᾱ_0)."""
    ac = sched.alphas_cumprod.to(torch.float64)
    final = float(sched.final_alpha_cumprod)
    jump = sched.config.num_train_timesteps // sched.num_inference_steps
    s = lambda a: math.sqrt((1 - a) / a)  # noqa: E731
    at = [s(float(ac[int(t)])) for t in sched.timesteps]
    to = [s(float(ac[int(t) - jump])) if int(t) - jump >= 0 else s(final) for t in sched.timesteps]
    return at, to


def call_sigmas(sched, kind: str) -> list[float]:
    """σ of every model call, in order (float64 values of the scheduler's float32 σ)."""
    if kind == "ddim":
        return _ddim_sigmas(sched)[0]
    return [float(v) for v in sched.sigmas[: len(sched.timesteps)].to(torch.float64)]


def scheduler_grid(sched, kind: str) -> Tensor:
    """The σ grid the scheduler walks, float64, as rill spells it (decreasing, ending where diffusers ends).

    Raises if the scheduler's steps do not form one chain (DDIM with a spacing whose jump T//n skips the next
    timestep: the next model call would then be at a σ the sample is not at)."""
    if kind == "ddim":
        at, to = _ddim_sigmas(sched)
        if any(abs(a - b) > 1e-12 * max(a, 1) for a, b in zip(at[1:], to[:-1])):
            raise ValueError("DDIM steps t -> t - T//n do not land on the next timestep for this spacing / n")
        return torch.tensor([*at, to[-1]], dtype=torch.float64)
    sig = sched.sigmas.to(torch.float64)
    if kind == "heun":  # [σ0, σ1, σ1, …, σ_{n−1}, σ_{n−1}, 0]: every σ after the first is visited twice
        return torch.cat([sig[:1], sig[1:-1:2], sig[-1:]])
    return sig.clone()


def timestep_gap(sched, kind: str) -> float:
    """Largest |t_fed − t(σ)| over the calls: how far the timestep diffusers feeds the model is from the σ its
    solver uses (0 for integer-spaced VP grids; up to 0.5 where diffusers rounds Karras timesteps)."""
    if kind == "edm_dpmpp":
        return max(
            abs(float(t) - 0.25 * math.log(s)) for t, s in zip(sched.timesteps, call_sigmas(sched, kind))
        )
    log_tab = np.log(((1 - sched.alphas_cumprod.double()) / sched.alphas_cumprod.double()).sqrt().numpy())
    gaps = []
    for t, s in zip(sched.timesteps, call_sigmas(sched, kind)):
        t_sigma = np.interp(math.log(s), log_tab, np.arange(len(log_tab)))  # log σ_t is increasing in t
        gaps.append(abs(float(t) - t_sigma))
    return max(gaps)


def eps_model(denoiser: Callable, kind: str, cond=None) -> Callable[[Tensor, float], Tensor]:
    """The exact model in the scheduler's parametrisation, evaluated at the σ the scheduler uses."""

    def model(x_in: Tensor, sigma: float) -> Tensor:
        s = torch.full((x_in.shape[0],), sigma, dtype=x_in.dtype)
        if kind == "edm_dpmpp":  # EDM Eq. 7 with σ_data 0.5: x_in = c_in·x, output F = (D − c_skip·x) / c_out
            sd = 0.5
            x = x_in * math.sqrt(sigma**2 + sd**2)
            c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2)
            return (denoiser(x, s, cond) - c_skip * x) / c_out
        x = x_in * math.sqrt(1 + sigma**2)  # x_vp = x / sqrt(1 + σ²)
        return (x - denoiser(x, s, cond)) / sigma

    return model


def run_scheduler(
    sched, kind: str, denoiser: Callable, x: Tensor, cond=None, model=None
) -> tuple[Tensor, int]:
    """Run a set-up diffusers scheduler from rill's x at σ_0 (VE); return (x at the scheduler's last σ in VE
    coordinates, number of model calls). `model(x_in, σ)` replaces the exact ε-model (e.g. a trivial one)."""
    sigmas = call_sigmas(sched, kind)
    last = float(scheduler_grid(sched, kind)[-1])
    model = model or eps_model(denoiser, kind, cond)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(0)
    sample = x if kind in _VE_STATE else x / math.sqrt(1 + sigmas[0] ** 2)
    calls = 0
    for i, t in enumerate(sched.timesteps):
        x_in = sched.scale_model_input(sample, t) if kind != "ddim" else sample
        out = model(x_in, sigmas[i])
        calls += 1
        sample = sched.step(out, t, sample, return_dict=False)[0]
    if kind not in _VE_STATE:
        sample = sample * math.sqrt(1 + last**2)
    return sample, calls


def peer_config(kind: str, config: dict, sigma_min: float = 0.002, sigma_max: float = 80.0) -> dict:
    """`config` plus the σ range: EDM-DPM takes it directly, the others through a log-uniform VP table."""
    if kind == "edm_dpmpp":
        return {"sigma_min": sigma_min, "sigma_max": sigma_max, **config}
    return {"trained_betas": log_uniform_betas(sigma_min, sigma_max), **config}


def peer_steps(kind: str, nfe: int) -> int:
    """Steps that spend at most `nfe` model calls (Heun: 2n − 1 calls for n steps)."""
    return (nfe + 1) // 2 if kind == "heun" else nfe


def run_peer(kind: str, config: dict, nfe: int, denoiser, z: Tensor, model=None) -> tuple[Tensor, int]:
    """A fresh scheduler for an `nfe` budget, run from standard-normal `z` scaled to its first σ."""
    sched = make_scheduler(kind, peer_steps(kind, nfe), **peer_config(kind, config))
    return run_scheduler(sched, kind, denoiser, z * float(scheduler_grid(sched, kind)[0]), model=model)
