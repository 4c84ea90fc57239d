"""The training loop: exact resume, NaN stop, SIGTERM save-and-stop, configs, dry-run."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from _procs import signal_when_ready

from rill.model import DiffusionModel, config_to_json, load_model
from rill.train import NonFiniteLossError, TrainConfig, lr_factor, train, train_preset
from rill.train.batches import batch_indices
from rill.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, verify_checkpoint
from rill.train.cli import main
from rill.train.ema import EMA

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny(out: Path, **kw) -> TrainConfig:
    """Digits with class-label conditioning and a 16-channel U-Net: a few steps take seconds."""
    over = {
        "out_dir": str(out),
        "steps": 6,
        "batch_size": 16,
        "log_every": 1,
        "checkpoint_every": 3,
        "sample_every": 0,
        "warmup_steps": 2,
        "num_threads": 1,
        "model.text_encoder": "digits",
        "model.net_overrides": {"channels": 16},
        **kw,
    }
    return train_preset("digits", **over)


def losses(out: Path) -> list[tuple[int, float]]:
    with open(out / "log.csv", newline="") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path):
    drop = {
        "model.net_overrides": {"channels": 16, "dropout": 0.1}
    }  # dropout draws from the global torch RNG
    straight = train(tiny(tmp_path / "a", **drop), progress=False)
    train(tiny(tmp_path / "b", steps=3, **drop), progress=False)  # a first session that stops at step 3 ...
    resumed = train(tiny(tmp_path / "b", **drop), resume=True, progress=False)  # ... and continues to 6
    la, lb = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert [s for s, _ in la] == [s for s, _ in lb] == [1, 2, 3, 4, 5, 6]
    assert lb == la  # tolerance 0: the loss curve is bit-identical
    a, b = load_model(straight), load_model(resumed)
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    ck = load_checkpoint(latest_checkpoint(tmp_path / "b"))
    assert ck.step == 6 and ck.state["images_seen"] == 96
    # resuming from an older checkpoint drops the log rows after it, and the rerun repeats them exactly
    train(
        tiny(tmp_path / "b", **drop), resume=tmp_path / "b" / "checkpoints" / "step-00000003", progress=False
    )
    assert losses(tmp_path / "b") == la


@pytest.mark.parametrize(("objective", "precision"), [("epsilon", "no"), ("v", "bf16")])
def test_vp_objectives_and_bf16_train_and_load(tmp_path, objective, precision):
    cfg = tiny(
        tmp_path,
        steps=2,
        checkpoint_every=0,
        mixed_precision=precision,
        min_snr_gamma=5.0,
        **{"model.parametrisation": objective},
    )
    model = load_model(train(cfg, progress=False))
    assert model.config.parametrisation == objective and model.config.sigma_max > 80  # the VP schedule's σ_T
    assert all(map(torch.isfinite, (torch.tensor(loss) for _, loss in losses(tmp_path))))
    x0_hat = model.denoiser(
        torch.randn(3, 1, 8, 8), torch.tensor([0.5, 5.0, 50.0]), model.encode(["1", "2", ""])
    )
    assert x0_hat.shape == (3, 1, 8, 8) and torch.isfinite(x0_hat).all()


def test_init_from_warm_starts_a_new_run_and_refuses_another_backbone(tmp_path):
    first = train(tiny(tmp_path / "a", steps=3), progress=False)
    # a learning rate of 1e-9: two Adam steps move each weight by at most ~2e-9 from where the run began
    second = train(tiny(tmp_path / "b", steps=2, lr=1e-9, init_from=str(first)), progress=False)
    fresh = train(tiny(tmp_path / "c", steps=2, lr=1e-9), progress=False)
    a, b, c = (load_model(p).net.state_dict() for p in (first, second, fresh))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert max((a[k].float() - c[k].float()).abs().max() for k in a) > 1e-3  # not the seed's initialisation
    wider = tiny(tmp_path / "d", init_from=str(first), **{"model.net_overrides": {"channels": 24}})
    with pytest.raises(ValueError, match="--init-from .*backbone differs"):
        train(wider, progress=False)


def test_init_from_may_add_the_zero_initialised_refine_head_but_not_drop_it(tmp_path):
    plain = train(tiny(tmp_path / "a", steps=3), progress=False)
    refine = {"model.net_overrides": {"channels": 16, "refine_channels": 8}}
    grown = train(tiny(tmp_path / "b", steps=1, lr=1e-9, init_from=str(plain), **refine), progress=False)
    a, b = load_model(plain), load_model(grown)
    assert b.net.refine is not None and a.net.refine is None
    x, sigma = torch.randn(4, 1, 8, 8), torch.tensor([0.02, 0.3, 2.0, 40.0])
    cond = a.encode(["1", "7", "", "3"])
    with torch.no_grad():  # the head's output starts at zero: the grown net denoises as the source did
        torch.testing.assert_close(b.denoiser(x, sigma, cond), a.denoiser(x, sigma, cond), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="--init-from .*backbone differs"):  # the source's head would be lost
        train(tiny(tmp_path / "c", init_from=str(grown)), progress=False)


def test_resume_refuses_a_different_run(tmp_path):
    train(tiny(tmp_path, steps=3), progress=False)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in \['lr'\]"):
        train(tiny(tmp_path, lr=5e-4), resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no valid checkpoint"):
        train(tiny(tmp_path / "empty"), resume=True, progress=False)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real, calls = DiffusionModel.loss, []

    def poisoned(self, *args, **kw):
        out = real(self, *args, **kw)
        calls.append(1)
        return out * float("nan") if len(calls) == 5 else out

    monkeypatch.setattr(DiffusionModel, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 5; .*step-00000003"):
        train(tiny(tmp_path, steps=8), progress=False)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003"]
    verify_checkpoint(tmp_path / "checkpoints" / "step-00000003")
    assert not (tmp_path / "model.safetensors").exists()
    assert [s for s, _ in losses(tmp_path)] == [1, 2, 3, 4]


def test_sigterm_saves_a_checkpoint_then_stops(tmp_path):
    # a constant schedule: with the preset's wsd, resuming with a smaller --steps would move the cooldown onto
    # steps already taken (refused), and whether it does depends on the step SIGTERM lands on
    const = {"lr_schedule": "constant"}
    cfg = tiny(tmp_path, steps=100_000, checkpoint_every=0, keep_last=1, **const)
    (tmp_path / "cfg.json").write_text(config_to_json(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "rill.train", "--config", str(tmp_path / "cfg.json"), "--quiet"]
    ready = lambda: (tmp_path / "log.csv").exists() and len(losses(tmp_path)) >= 2  # noqa: E731
    code, err = signal_when_ready(cmd, env, ready, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "--resume" in err
    ck = load_checkpoint(latest_checkpoint(tmp_path))
    assert ck.step >= 2 and ck.step == losses(tmp_path)[-1][0]
    again = tiny(tmp_path, steps=ck.step + 1, checkpoint_every=0, keep_last=1, **const)
    train(again, resume=True, progress=False)
    assert losses(tmp_path)[-1][0] == ck.step + 1


def test_data_order_is_a_pure_function_of_seed_and_step():
    n, b = 10, 4
    steps = [batch_indices(s, n, b, seed=1) for s in range(5)]  # 20 positions = 2 epochs
    flat = torch.cat(steps)
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:].tolist()) == list(range(10))
    assert torch.equal(batch_indices(3, n, b, seed=1), steps[3])
    assert not torch.equal(batch_indices(0, n, b, seed=2), steps[0])


def test_lr_warmup_and_cosine(tmp_path):
    cfg = tiny(tmp_path, warmup_steps=4, steps=14, lr_schedule="cosine")
    assert [lr_factor(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(9, cfg) == pytest.approx(0.5)  # halfway through the cosine part
    assert lr_factor(14, cfg) == pytest.approx(0.0)


def test_lr_cooldown_and_its_errors(tmp_path):
    cfg = tiny(tmp_path, warmup_steps=2, steps=12, lr_schedule="cooldown", cooldown_steps=4)
    got = [lr_factor(s, cfg) for s in range(13)]
    assert got[:2] == [0.5, 1.0] and got[2:9] == [1.0] * 7  # warm-up, then constant up to steps - cooldown
    assert got[9:] == pytest.approx([0.75, 0.5, 0.25, 0.0])  # linear to 0 at `steps`
    with pytest.raises(ValueError, match="needs --steps and 0 < cooldown_steps"):
        tiny(tmp_path, lr_schedule="cooldown", cooldown_steps=0)
    with pytest.raises(ValueError, match="needs --steps"):
        tiny(tmp_path, steps=None, minutes=1.0, lr_schedule="cooldown", cooldown_steps=3)


def test_resume_may_add_a_cooldown_only_after_the_steps_taken(tmp_path):
    """Constant lr for 6 steps, then resumed with a cooldown from step 6 to 10 == one run of that schedule."""
    sched = {"steps": 10, "lr_schedule": "cooldown", "cooldown_steps": 4}
    straight = train(tiny(tmp_path / "a", **sched), progress=False)
    train(tiny(tmp_path / "b", lr_schedule="constant"), progress=False)  # constant schedule, 6 steps
    resumed = train(tiny(tmp_path / "b", **sched), resume=True, progress=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    a, b = load_model(straight), load_model(resumed)
    assert all(torch.equal(a.net.state_dict()[k], v) for k, v in b.net.state_dict().items())
    # a cooldown that would have lowered the rate of steps already taken is refused, naming the step
    longer = tiny(tmp_path / "b", steps=12, lr_schedule="cooldown", cooldown_steps=8)
    with pytest.raises(ValueError, match="schedule now differs at step 5 "):
        train(longer, resume=True, progress=False)
    with pytest.raises(ValueError, match="schedule now differs at step 3 "):  # cosine: below 1 from step 3
        train(tiny(tmp_path / "b", steps=10, lr_schedule="cosine"), resume=True, progress=False)


def test_ema_halflife_in_images():
    net = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, halflife_images=64, rampup=None)
    assert ema.beta(64, 1000) == pytest.approx(0.5) and ema.beta(32, 1000) == pytest.approx(0.5**0.5)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net, 64, 64)
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.5))
    ramp = EMA(net, halflife_images=1e6, rampup=0.5)
    assert ramp.beta(10, 20) == pytest.approx(0.5)  # half-life capped at 0.5 · 20 images seen
    with pytest.raises(ValueError, match="exactly one"):
        EMA(net, decay=0.9, halflife_images=10)


def test_configs_validate_and_dry_run_prints_json(capsys):
    with pytest.raises(ValueError, match=r"caption_dropout=1\.5 must be in \[0.0, 1.0\]"):
        train_preset("digits", caption_dropout=1.5)
    with pytest.raises(ValueError, match="unknown parametrisation 'ddpm'"):
        train_preset("digits", **{"model.parametrisation": "ddpm"})
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        train_preset("digits", stepz=3)
    with pytest.raises(ValueError, match="unknown training preset 'cats'"):
        train_preset("cats")
    for name in ("digits", "shapes", "points", "signals"):
        assert train_preset(name).model.shape
    assert (
        main(["--preset", "shapes", "--steps", "7", "--set", "model.net_overrides.channels=32", "--dry-run"])
        == 0
    )
    cfg = json.loads(capsys.readouterr().out)
    assert (
        cfg["steps"] == 7
        and cfg["model"]["net_overrides"]
        == json.loads(config_to_json(train_preset("shapes")))["model"]["net_overrides"] | {"channels": 32}
        and cfg["data"] == "shapes"
    )
    assert main(["--preset", "small", "--data", "points:moons", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (
        cfg["model"]["net"] == "mlp"
        and cfg["model"]["net_preset"] == "small"
        and cfg["data"] == "points:moons"
    )
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--resume" in capsys.readouterr().out
