"""sampler="auto" is monotone in quality: more denoiser calls never give a worse endpoint, on the bundled
digits model (without guidance: AUTO; with guidance: AUTO_GUIDED) and on the benchmark's exact mixture."""

from __future__ import annotations

import pytest
import torch

import rill
from rill.core.guidance import CFGDenoiser
from rill.core.mixture import GaussianMixture
from rill.model import bundled_model

NFES = [4, 5, 6, 7, 8, 9, 10, 12, 16, 20, 25]


def _rms(x, ref, clamp: bool) -> float:
    if clamp:  # images: what a user sees is clamped to [-1, 1]
        x, ref = x.clamp(-1, 1), ref.clamp(-1, 1)
    return float(((x - ref) ** 2).mean().sqrt())


def _errors(denoiser, z, reference_nfe: int = 199, clamp: bool = True, guided: bool = False) -> list[float]:
    ref = rill.sample(denoiser, z, nfe=reference_nfe, sampler="heun", grid="karras")
    return [_rms(rill.sample(denoiser, z, nfe=n, guided=guided), ref, clamp) for n in NFES]


def _assert_monotone(errors: list[float], slack: float) -> None:
    bad = [(a, b, ea, eb) for a, b, ea, eb in zip(NFES, NFES[1:], errors, errors[1:]) if eb > ea + slack]
    table = ", ".join(f"{n}: {e:.4f}" for n, e in zip(NFES, errors))
    assert not bad, f"auto is worse with more calls at {[(a, b) for a, b, *_ in bad]} ({table})"


@pytest.fixture(scope="module")
def digits():
    return bundled_model("digits")


@pytest.mark.slow
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_auto_is_monotone_on_the_digits_model(digits, guidance):
    prompts = [f"the number {d}" for d in range(10)]
    cond = digits.encode(prompts)
    guided = (
        CFGDenoiser(digits.denoiser, digits.encode([""]), scale=guidance)
        if guidance != 1
        else digits.denoiser
    )
    z = torch.stack(
        [torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(700 + i)) for i in range(10)]
    )
    with torch.no_grad():
        errors = _errors(lambda x, s, c=None: guided(x, s, cond), z, guided=guidance != 1)  # auto's table
    _assert_monotone(errors, slack=2e-3)  # 2e-3 px: below what a user could see, above float noise


def test_auto_is_monotone_on_the_exact_mixture():
    gm = GaussianMixture.random(64, 8, seed=0)
    z = torch.randn(256, 64, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    errors = _errors(gm, z, reference_nfe=399, clamp=False)
    _assert_monotone(errors, slack=1e-3)
