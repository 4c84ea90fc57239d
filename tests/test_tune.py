"""Per-model sampler tuning: the plan it writes is used by sampler="auto", only where it applies."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from _models import tiny_digits_model

from rill.inference import generate
from rill.inference.plans import plan_for
from rill.inference.tune import tune_sampler
from rill.model import load_model, save_model
from rill.samplers import sigmas_for


@pytest.fixture(scope="module")
def model():
    return tiny_digits_model()


def test_tune_returns_a_valid_plan_and_validates_it(model):
    plan = tune_sampler(model, 4, guidance=2.0, prompts=["3", "5"], evals=8, reference_nfe=39)
    sig = plan["sigmas"]
    assert len(sig) == len(sigmas_for("auto", 4)) and sig[-1] == 0 and sig[0] == pytest.approx(80.0)
    assert all(a > b for a, b in zip(sig, sig[1:]))
    v = plan["validation"]
    assert plan["kept"] == (v["tuned"] < 0.95 * v["auto"])
    assert plan["tuning"]["trials"] <= 8


def test_auto_uses_a_matching_plan_and_nothing_else(model):
    grid = [80.0, 3.0, 0.4, 0.01, 0.0]
    tuned = tiny_digits_model()
    tuned.sampling["4"] = {"sampler": "euler", "options": {}, "sigmas": grid, "guidance": 2.0}
    seen = []

    def record(step, x, sigma, x0):
        seen.append(sigma)

    generate(tuned, "3", nfe=4, guidance=2.0, callback=record)
    assert seen == pytest.approx(grid[:-1])
    for kwargs in ({"guidance": 3.0}, {"nfe": 5}, {"sampler": "dpmpp_2m"}, {"sigma_max": 40.0}):
        seen.clear()
        generate(tuned, "3", **{"nfe": 4, "guidance": 2.0, **kwargs}, callback=record)
        assert seen != pytest.approx(grid[:-1]), kwargs
    assert plan_for(model, "auto", 4, 2.0, 0.002, 80.0) is None  # an untuned model has no plan


def test_the_plan_travels_in_the_model_file(tmp_path):
    m = tiny_digits_model()
    m.sampling["4"] = {
        "sampler": "euler",
        "options": {},
        "sigmas": [80.0, 3.0, 0.4, 0.01, 0.0],
        "guidance": 2.0,
    }
    again = load_model(save_model(m, tmp_path / "m.safetensors"))
    assert again.sampling == m.sampling
    m.net.to(memory_format=torch.channels_last)  # as load_model lays out image nets: the same bits
    a = generate(m, "7", nfe=4, guidance=2.0, seed=3)
    b = generate(again, "7", nfe=4, guidance=2.0, seed=3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cli_refuses_to_rewrite_a_bundled_model():
    r = subprocess.run(
        [sys.executable, "-m", "rill", "tune-sampler", "digits", "--nfe", "8"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "pass --out" in r.stderr and "Traceback" not in r.stderr
