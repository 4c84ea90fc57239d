"""rill.core: the math, and nothing else (torch and numpy only).

sigma.py            σ defaults, the one σ-range check, σ ↔ ᾱ ↔ λ conversions
checks.py           the shared argument checks (positive integers, ranges, choices)
tensors.py          append_dims, sigma_batch
schedules.py        discrete VP schedules in σ, training noise distributions
grids.py            sampling σ grids and their registry GRIDS ("rill" = designed_grid.py)
denoiser.py         the contract D(x; σ, cond) -> x̂0 and the score
parametrisations/   edm, epsilon, v, x0: backbone -> contract, each with its loss
guidance.py         classifier-free guidance as a denoiser wrapper
mixture.py          the exact Gaussian mixture (closed-form D, log p_σ, score)
"""
