"""The time-based "wsd" schedule (the cooldown laid over --minutes), and the guidance a sweep chooses."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch

from rill.eval.guidance import choose_guidance, stored_sweep, write_default_guidance
from rill.model import DiffusionModel, ModelConfig, load_model, save_model
from rill.train import lr_factor, train, train_preset
from rill.train.cli import config_from_args, train_parser
from rill.train.loop import budget_progress

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny(out: Path, **kw):
    over = {"out_dir": str(out), "batch_size": 16, "log_every": 1, "checkpoint_every": 0, "sample_every": 0,
            "warmup_steps": 2, "num_threads": 1, "model.text_encoder": "digits",
            "model.net_overrides": {"channels": 16}, **kw}  # fmt: skip
    return train_preset("digits", **over)


def rows(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_wsd_by_steps_is_warmup_constant_then_linear_to_zero(tmp_path):
    cfg = tiny(tmp_path, steps=10, lr_schedule="wsd", cooldown_fraction=0.4)
    got = [lr_factor(s, cfg) for s in range(11)]
    assert got[:2] == [0.5, 1.0] and got[2:7] == [1.0] * 5
    assert got[7:] == pytest.approx([0.75, 0.5, 0.25, 0.0])  # the last 40% of the 10 steps
    with pytest.raises(ValueError, match=r"cooldown_fraction=0\.0 must be in \(0\.0, 1\.0\]"):
        tiny(tmp_path, steps=10, lr_schedule="wsd", cooldown_fraction=0.0)


def test_wsd_by_time_follows_the_larger_share_of_either_budget(tmp_path):
    cfg = tiny(tmp_path, steps=None, minutes=10.0, lr_schedule="wsd", cooldown_fraction=0.2)
    assert lr_factor(50, cfg, elapsed=60.0) == 1.0
    assert lr_factor(50, cfg, elapsed=540.0) == pytest.approx(0.5)  # 90% of 600 s
    assert lr_factor(50, cfg, elapsed=700.0) == 0.0
    both = tiny(tmp_path, steps=100, minutes=10.0, lr_schedule="wsd", cooldown_fraction=0.2)
    assert budget_progress(90, both, elapsed=60.0) == pytest.approx(0.9)  # the steps run out first
    assert lr_factor(90, both, elapsed=60.0) == pytest.approx(0.5)
    assert lr_factor(90, both) == pytest.approx(0.5)  # no clock: the steps alone


def test_minutes_alone_is_the_budget_and_the_run_cools_down_in_it(tmp_path):
    args = train_parser().parse_args(["--preset", "digits", "--minutes", "0.05"])
    assert config_from_args(args).steps is None  # the preset's step count no longer stops a timed run
    args = train_parser().parse_args(["--preset", "digits", "--minutes", "1", "--steps", "7"])
    assert config_from_args(args).steps == 7
    cfg = tiny(tmp_path / "t", steps=None, minutes=0.05, lr_schedule="wsd", cooldown_fraction=0.5)
    train(cfg, progress=False)
    log = rows(tmp_path / "t")
    assert float(log[-1]["wall_time"]) >= 3.0  # used the whole 3 s
    assert float(log[-1]["lr"]) < 0.5 * cfg.lr  # and ended deep in its cooldown
    # resuming a timed run with a longer budget continues on the clock from where it stopped
    done = int(log[-1]["step"])
    train(tiny(tmp_path / "t", steps=None, minutes=0.1, lr_schedule="wsd", cooldown_fraction=0.5),
          resume=True, progress=False)  # fmt: skip
    log = rows(tmp_path / "t")
    assert int(log[-1]["step"]) > done and float(log[-1]["wall_time"]) >= 6.0


def test_choose_guidance_rule():
    digits = {1.0: {"fd": 3.4, "adherence": 0.97}, 1.5: {"fd": 4.5, "adherence": 1.0},
              2.0: {"fd": 7.1, "adherence": 1.0}, 3.0: {"fd": 11.6, "adherence": 1.0}}  # fmt: skip
    assert choose_guidance(digits) == 1.5  # w = 1 has the lowest FD but misses 98% adherence
    shapes = {"1.0": {"fd": 77.2, "adherence": 0.63}, "3.0": {"fd": 53.6, "adherence": 0.875},
              "4.0": {"fd": 48.6, "adherence": 0.819}, "8.0": {"fd": 35.6, "adherence": 0.5}}  # fmt: skip
    assert choose_guidance(shapes) == 3.0  # none reaches 98%: within 0.02 of the best adherence
    with pytest.raises(ValueError, match="empty"):
        choose_guidance({})


def test_write_default_guidance_copies_and_never_overwrites(tmp_path):
    model = DiffusionModel(ModelConfig(text_encoder="digits", net_overrides={"channels": 16}, guidance=3.0))
    src = save_model(model, tmp_path / "m.safetensors", metadata={"step": 7})
    sweep = {1.5: {"fd": 4.5, "adherence": 1.0}}
    dst = write_default_guidance(src, tmp_path / "m2.safetensors", 1.5, sweep, seed=10_000)
    a, b = load_model(src), load_model(dst)
    assert a.config.guidance == 3.0 and b.config.guidance == 1.5
    assert all(torch.equal(a.net.state_dict()[k], v) for k, v in b.net.state_dict().items())
    got = stored_sweep(b)
    assert b.info["step"] == 7 and got["chosen"] == 1.5 and got["previous_default"] == 3.0
    assert got["rows"] == {"1.5": {"fd": 4.5, "adherence": 1.0}} and got["seed"] == 10_000
    with pytest.raises(FileExistsError, match="never overwrites"):
        write_default_guidance(src, dst, 2.0, sweep)
    assert load_model(dst).config.guidance == 1.5
