"""The guidance interval: guidance only for σ in [lo, hi] (Kynkäänniemi et al. 2024), as a model default, a
generate() argument, and a dimension of the guidance sweep that chooses the default."""

from __future__ import annotations

import math
import os

import pytest
import torch
from _models import tiny_digits_model

from rill.eval.guidance import (
    choose_guidance,
    choose_setting,
    guidance_sweep,
    parse_intervals,
    parse_setting,
    setting_key,
    stored_sweep,
    write_default_guidance,
)
from rill.inference.generate import generate
from rill.model import DiffusionModel, ModelConfig, load_model, save_model

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    return tiny_digits_model(0)


def test_an_interval_that_holds_no_sigma_of_the_walk_is_no_guidance(model):
    kw = dict(nfe=6, sampler="dpmpp_2m", seed=0)  # one solver for all ("auto" picks another one when guided)
    plain = generate(model, "a 5", guidance=1.0, **kw)
    full = generate(model, "a 5", guidance=3.0, **kw)
    nowhere = generate(model, "a 5", guidance=3.0, guidance_interval=(1e3, 1e4), **kw)
    everywhere = generate(model, "a 5", guidance=3.0, guidance_interval=(0.0, math.inf), **kw)
    assert (plain - full).abs().max() > 1e-3
    torch.testing.assert_close(nowhere, plain, rtol=0, atol=0)
    torch.testing.assert_close(everywhere, full, rtol=0, atol=0)
    part = generate(model, "a 5", guidance=3.0, guidance_interval=(0.0, 1.0), **kw)
    assert (part - full).abs().max() > 1e-3 and (part - plain).abs().max() > 1e-3


def test_the_models_interval_is_the_default_and_an_argument_overrides_it(model, tmp_path):
    model.config.guidance_interval = (0.0, 1.0)
    try:
        via_config = generate(model, "a 5", nfe=6, guidance=3.0, seed=0)
        overridden = generate(model, "a 5", nfe=6, guidance=3.0, guidance_interval=(0.0, math.inf), seed=0)
        path = save_model(model, tmp_path / "m.safetensors")
    finally:
        model.config.guidance_interval = None
    explicit = generate(model, "a 5", nfe=6, guidance=3.0, guidance_interval=(0.0, 1.0), seed=0)
    full = generate(model, "a 5", nfe=6, guidance=3.0, seed=0)
    torch.testing.assert_close(via_config, explicit, rtol=0, atol=0)
    torch.testing.assert_close(overridden, full, rtol=0, atol=0)
    loaded = load_model(path)
    assert loaded.config.guidance_interval == (0.0, 1.0)  # through the JSON in the file's metadata
    torch.testing.assert_close(generate(loaded, "a 5", nfe=6, guidance=3.0, seed=0), via_config)


@pytest.mark.parametrize("bad", [(1.0, 0.5), (-1.0, 1.0), (0.5,), "0-1", (0.0, "x")])
def test_a_bad_interval_names_itself(bad):
    with pytest.raises(ValueError, match="model.guidance_interval"):
        ModelConfig(text_encoder="digits", guidance_interval=bad)


def test_setting_keys_round_trip_and_the_rule_spans_intervals():
    assert setting_key(1.5) == 1.5 and setting_key(1.5, (0.0, 1.0)) == "1.5@0-1"
    assert parse_setting("1.5@0-1") == (1.5, (0.0, 1.0)) and parse_setting("2.0") == (2.0, None)
    assert parse_intervals("all, 0-1,0.1-2") == [None, (0.0, 1.0), (0.1, 2.0)]
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        parse_intervals("2-1")
    rows = {1.0: {"fd": 5.2, "adherence": 0.967}, 1.5: {"fd": 6.8, "adherence": 0.997},
            "1.5@0-1": {"fd": 4.4, "adherence": 0.99}, "3@0-1": {"fd": 5.6, "adherence": 0.997},
            "2@0-1": {"fd": 4.3, "adherence": 0.95}}  # fmt: skip
    assert choose_setting(rows) == "1.5@0-1"  # 2@0-1 has a lower FD but misses the adherence floor
    assert choose_guidance(rows) == 1.5


def test_the_sweep_runs_each_guidance_in_each_interval_and_no_guidance_once(monkeypatch):
    from rill.eval import run

    calls = []

    def fake(model, dataset, prompts, *, guidance, guidance_interval, **_):
        calls.append((guidance, guidance_interval))
        narrow = guidance_interval != (0.0, math.inf)
        return {"fd": 10 * guidance - 5 * narrow, "adherence": 1.0, "precision": 1.0, "recall": 1.0}

    monkeypatch.setattr(run, "evaluate_model", fake)
    rows = guidance_sweep(object(), "digits", [1, 2], intervals=[None, (0.0, 1.0)], log=False)
    assert list(rows) == [1.0, 2.0, "2@0-1"]
    assert calls == [(1.0, (0.0, math.inf)), (2.0, (0.0, math.inf)), (2.0, (0.0, 1.0))]
    assert choose_setting(rows) == 1.0


def test_write_default_records_the_interval_and_the_cli_line_shows_it(tmp_path):
    from rill.eval.cli import _guidance_line

    model = DiffusionModel(ModelConfig(text_encoder="digits", net_overrides={"channels": 16}, guidance=3.0))
    src = save_model(model, tmp_path / "m.safetensors")
    rows = {1.0: {"fd": 5.2, "adherence": 0.97}, "1.5@0-1": {"fd": 4.4, "adherence": 0.99}}
    dst = write_default_guidance(src, tmp_path / "m2.safetensors", 1.5, rows, (0.0, 1.0), seed=10_000)
    b = load_model(dst)
    assert b.config.guidance == 1.5 and b.config.guidance_interval == (0.0, 1.0)
    got = stored_sweep(b)
    assert got["interval"] == [0.0, 1.0] and set(got["rows"]) == {"1.0", "1.5@0-1"}
    line = _guidance_line(b, None)
    assert "default 1.5 for σ in [0, 1]" in line and "best of the sweep recorded" in line
    assert load_model(src).config.guidance_interval is None
