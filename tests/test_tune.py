"""Per-model sampler tuning: the plan it writes is used by sampler="auto", only where it applies."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from _models import tiny_digits_model

from rill.inference import generate
from rill.inference.plans import plan_for
from rill.inference.tune import tune_plans, tune_sampler
from rill.model import load_model, save_model
from rill.samplers import sigmas_for


@pytest.fixture(scope="module")
def model():
    return tiny_digits_model()


def test_grid_search_returns_a_valid_plan_and_validates_it(model):
    plan = tune_sampler(model, 4, guidance=2.0, method="grid", prompts=["3", "5"], evals=8, reference_nfe=39)
    sig = plan["sigmas"]
    assert len(sig) == len(sigmas_for("auto", 4)) and sig[-1] == 0 and sig[0] == pytest.approx(80.0)
    assert all(a > b for a, b in zip(sig, sig[1:]))
    v = plan["validation"]
    assert plan["kept"] == (v["tuned"] < 0.95 * v["auto"])
    assert plan["tuning"]["iterations"] <= 8


def test_learned_plan_lowers_the_tuning_error_and_is_a_valid_lms_plan(model):
    plan = tune_sampler(model, 5, guidance=2.0, prompts=["3", "5"], steps=40, reference_nfe=39)
    t = plan["tuning"]
    assert t["method"] == "learned" and t["rms"] < 0.9 * t["rms_auto"]  # gradient descent did something
    assert plan["guidance"] == 2.0 and plan["guidance_interval"] is None
    if plan["kept"]:
        assert plan["sampler"] == "lms" and len(plan["options"]["weights"]) == len(plan["sigmas"]) - 1
        assert plan["validation"]["tuned"] < 0.95 * plan["validation"]["auto"]
    sig = plan["sigmas"]
    assert sig[0] == pytest.approx(80.0) and sig[-1] == 0 and all(a > b for a, b in zip(sig, sig[1:]))
    assert min(sig[:-1]) >= 0.002


def test_plans_across_budgets_are_monotone_on_validation(model):
    plans = tune_plans(model, [3, 4, 6], guidance=[2.0], prompts=["3"], steps=20, reference_nfe=39)
    used = [p["validation"]["used"] for p in plans]
    assert [p["nfe"] for p in plans] == [3, 4, 6]
    assert all(b < a or q.get("uses_nfe") for a, b, q in zip(used, used[1:], plans[1:]))


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


def test_a_plan_applies_between_tuned_budgets_and_only_at_its_guidance_interval():
    m = tiny_digits_model()
    grid = [80.0, 3.0, 0.4, 0.01, 0.0]
    plan = {
        "sampler": "euler",
        "options": {},
        "sigmas": grid,
        "guidance": 2.0,
        "guidance_interval": [0.0, 0.5],
    }
    m.sampling = {"4": [plan], "8": [{**plan, "sigmas": [80.0, 9.0, 3.0, 1.0, 0.4, 0.1, 0.03, 0.01, 0.0]}]}
    assert plan_for(m, "auto", 4, 2.0, 0.002, 80.0, (0.0, 0.5)) is plan
    assert plan_for(m, "auto", 6, 2.0, 0.002, 80.0, (0.0, 0.5)) is plan  # 6 calls: the 4-call plan fits
    assert plan_for(m, "auto", 9, 2.0, 0.002, 80.0, (0.0, 0.5)) is None  # above the largest tuned budget
    assert plan_for(m, "auto", 4, 2.0, 0.002, 80.0, None) is None  # guidance at every σ: not what was tuned
    assert plan_for(m, "auto", 3, 2.0, 0.002, 80.0, (0.0, 0.5)) is None  # below the smallest


def test_lms_reproduces_the_solvers_it_is_read_from():
    from rill.core.mixture import GaussianMixture
    from rill.samplers import get_sampler
    from rill.samplers.lms import linear_weights

    gm = GaussianMixture.random(4, 3, seed=1)
    z = torch.randn(32, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 80
    for name, opts in [
        ("dpmpp_2m", {}),
        ("unipc", {"order": 3, "variant": "bh1"}),
        ("ipndm", {}),
        ("euler", {}),
    ]:
        s = sigmas_for(name, 7, 0.002, 80, "karras", **opts)
        w = linear_weights(name, s, **opts)
        ref = get_sampler(name)(gm, z.clone(), s, **opts)
        torch.testing.assert_close(get_sampler("lms")(gm, z.clone(), s, weights=w), ref, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="heun"):
        linear_weights("heun", sigmas_for("heun", 7, 0.002, 80, "karras"))
    with pytest.raises(ValueError, match="sum to 1"):
        get_sampler("lms")(gm, z, torch.tensor([80.0, 1.0, 0.0]), weights=[[1.0], [0.5, 0.4]])


def test_cli_tunes_several_budgets_and_guidances_into_the_file(tmp_path, capsys):
    from rill.app.cli import main

    path = save_model(tiny_digits_model(), tmp_path / "m.safetensors")
    assert (
        main(
            ["tune-sampler", str(path), "--nfe", "3,4", "--guidance", "1,2", "--steps", "3", "--prompt", "3"]
        )
        == 0
    )
    out = capsys.readouterr().out
    m = load_model(path)
    if "nothing written" in out:
        assert m.sampling == {}
        return
    assert sorted(m.sampling) == ["3", "4"]
    for key in ("3", "4"):
        assert sorted(p["guidance"] for p in m.sampling[key]) == [1.0, 2.0]
    # a second run at one guidance replaces that guidance's plans and keeps the other's
    args = ["tune-sampler", str(path), "--nfe", "3", "--guidance", "2", "--method", "grid", "--evals", "2"]
    args += ["--prompt", "3", "--prompt", "5"]
    assert main(args) == 0
    again = load_model(path)
    assert sorted(p["guidance"] for p in again.sampling["3"]) == [1.0, 2.0]  # one plan per guidance, still


def test_cli_rejects_a_bad_guidance_interval():
    cmd = ["tune-sampler", "digits", "--nfe", "8", "--guidance-interval", "2,1", "--out", "x.safetensors"]
    r = subprocess.run([sys.executable, "-m", "rill", *cmd], capture_output=True, text=True)
    assert r.returncode == 2 and "LO,HI" in r.stderr and "Traceback" not in r.stderr
