"""Golden outputs: what the bundled models and the exact mixture produce must not change under a refactor.

The reference tensors were recorded before the package was reorganised (issue "Layout"), with one torch
thread. On a machine whose CPU reports the same capability as the recording machine they must be bit-identical
(compared by SHA-256 of the raw bytes); elsewhere (another instruction set may round differently) they must
agree to 1e-4. Re-record only on purpose, when an output is meant to change:

    RILL_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py -q
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent / "golden"
TENSORS = HERE / "outputs.safetensors"
INDEX = HERE / "outputs.json"
RECORD = os.environ.get("RILL_RECORD_GOLDEN") == "1"

DIGIT_SAMPLERS = ["auto", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde",
                  "unipc", "ipndm", "ddim", "ddpm", "langevin"]  # fmt: skip
SHAPE_SAMPLERS = ["auto", "dpmpp_2m", "euler_ancestral"]
MIXTURE_CASES = [("auto", 5, None), ("auto", 10, None), ("unipc", 8, "karras"), ("heun", 9, "exponential"),
                 ("dpmpp_2m", 6, "logsnr"), ("dpmpp_2m_sde", 6, "karras")]  # fmt: skip


def _cases():
    import rill
    from rill.core.mixture import GaussianMixture
    from rill.inference.generate import generate
    from rill.model import bundled_model

    digits = bundled_model("digits")
    for sampler in DIGIT_SAMPLERS:
        yield (
            f"digits/{sampler}",
            lambda s=sampler: generate(
                digits, ["a handwritten digit 3", "seven"], n=2, nfe=8, sampler=s, seed=11
            ),
        )
    yield "digits/guidance1", lambda: generate(digits, ["the number 5"], n=2, nfe=6, guidance=1.0, seed=3)
    yield "digits/negative", lambda: generate(digits, ["a 4"], negative="a 9", n=2, nfe=6, guidance=4.0)
    shapes = bundled_model("shapes", text_encoder=digits.text_encoder) if _takes_encoder() else None
    shapes = shapes or bundled_model("shapes")
    for sampler in SHAPE_SAMPLERS:
        yield (
            f"shapes/{sampler}",
            lambda s=sampler: generate(
                shapes,
                ["a large blue circle to the left of a small red square"],
                n=2,
                nfe=6,
                sampler=s,
                seed=5,
            ),
        )
    gm = GaussianMixture.random(16, 6, seed=3)
    for sampler, nfe, grid in MIXTURE_CASES:
        noise = torch.randn(8, 16, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        gens = [torch.Generator().manual_seed(100 + i) for i in range(8)]
        yield (
            f"mixture/{sampler}-{nfe}-{grid}",
            lambda s=sampler, n=nfe, g=grid, z=noise, gs=gens: rill.sample(
                gm, z, nfe=n, sampler=s, grid=g, generator=gs
            ),
        )


def _takes_encoder() -> bool:
    import inspect

    from rill.model import bundled_model

    return "text_encoder" in inspect.signature(bundled_model).parameters


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _capability() -> str:
    return f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()}"


@pytest.fixture(scope="module")
def outputs():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return {name: fn().detach().cpu().contiguous() for name, fn in _cases()}
    finally:
        torch.set_num_threads(old)


def test_golden_outputs(outputs):
    from safetensors.torch import load_file, save_file

    if RECORD:
        HERE.mkdir(exist_ok=True)
        save_file(outputs, str(TENSORS))
        index = {"capability": _capability(), "sha256": {k: _sha(v) for k, v in outputs.items()}}
        INDEX.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        pytest.skip("golden outputs recorded")
    index = json.loads(INDEX.read_text(encoding="utf-8"))
    ref = load_file(str(TENSORS))
    assert set(outputs) == set(ref), "the set of golden cases changed; re-record on purpose"
    exact = index["capability"] == _capability()
    bad = []
    for name, out in outputs.items():
        if exact:
            if _sha(out) != index["sha256"][name]:
                diff = (out.double() - ref[name].double()).abs().max().item()
                bad.append(f"{name} (max |diff| {diff:.3g})")
        elif not torch.allclose(out.double(), ref[name].double(), rtol=0, atol=1e-4):
            bad.append(name)
    assert not bad, f"outputs changed ({'bit-exact' if exact else 'atol 1e-4'} check): {bad}"
