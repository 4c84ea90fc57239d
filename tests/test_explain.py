"""rill explain: every view is drawn on the bundled models and checked by what its numbers say (the streams
end in the mixture's modes, x̂0 converges, Langevin without noise collapses, ...), not only by the files
existing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from rill.app.cli import main
from rill.app.commands.explain import points_config
from rill.model import bundled_model, load_model
from rill.train import train, train_preset
from rill.viz.explain import VIEWS, Inputs, explain, write_index
from rill.viz.explain.developing import band_energy
from rill.viz.explain.water import data_mixture

pytest.importorskip("matplotlib")
torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
GAUSSIANS8 = "points:gaussians8"


class ExactPoints:
    """The exact mixture dressed as a points model: the views must find a perfect field perfect."""

    def __init__(self, mixture):
        self.mixture = mixture

    def denoiser(self, x, sigma, cond=None):
        return self.mixture.denoise(x.double(), sigma.double()).to(x.dtype)


@pytest.fixture(scope="module")
def points_model(tmp_path_factory):
    """A 2-D model trained for a few seconds on gaussians8, as `rill explain` trains one (fewer steps)."""
    out = tmp_path_factory.mktemp("points")
    return train(points_config(out, steps=800), progress=False)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny label-conditioned digits run with four checkpoints and a log.csv."""
    out = tmp_path_factory.mktemp("run")
    cfg = train_preset(
        "digits",
        out_dir=str(out),
        steps=40,
        batch_size=32,
        log_every=5,
        checkpoint_every=10,
        keep_last=5,
        sample_every=0,
        warmup_steps=5,
        num_threads=1,
        cpu=True,
        **{"model.text_encoder": "digits", "model.net_overrides": {"channels": 16}},
    )
    train(cfg, progress=False)
    return out


def numbers(out: Path) -> dict:
    return json.loads((out / "numbers.json").read_text())["views"]


def test_band_energy_splits_a_picture_by_frequency():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    smooth = torch.cos(2 * torch.pi * x / 16)[None]  # 1/16 cycles per pixel
    sharp = torch.cos(torch.pi * (x + y))[None]  # a checkerboard: 0.5 cycles per pixel on each axis
    lo, hi = band_energy(smooth)
    assert hi < 1e-9 * lo and lo == pytest.approx(float(smooth.pow(2).sum()))
    lo, hi = band_energy(sharp)
    assert lo < 1e-9 * hi and hi == pytest.approx(float(sharp.pow(2).sum()))


def test_water_and_paths_on_the_exact_field_are_exact(tmp_path):
    mix = data_mixture(GAUSSIANS8)
    exact = ExactPoints(mix)
    inp = Inputs(model=exact, out=tmp_path, points=exact, mixture=mix)
    water, paths = explain(inp, ["water", "paths"])
    n = water.numbers
    assert max(n["relative_score_error"]) < 1e-8
    assert n["ascent_ends_near_data_mode"][-1] > 0.97  # σ = 0.2: every stream ends in a mode of the data
    assert n["ascent_ends_near_data_mode"][0] == 0.0  # σ = 2: one blurred pool in the middle, not the modes
    assert n["particles"]["share_within_0.45_of_a_mode"] > 0.97
    p = paths.numbers
    for method in ("ODE (Heun)", "SDE (Euler ancestral)", "Langevin"):
        assert p["modes_reached"][method] == 8
        assert 0.6 * p["data_spread"] < p["spread"][method] < 1.5 * p["data_spread"], method
    assert p["spread"]["Langevin, no noise"] < 0.05 * p["data_spread"]  # collapsed onto the peaks
    gif = Image.open(tmp_path / "water-particles.gif")
    assert gif.n_frames >= 10


def test_explain_on_the_bundled_digits_model_draws_every_view(tmp_path, points_model, capsys):
    out = tmp_path / "explain"
    assert main(["explain", "--model", "digits", "--points", str(points_model), "--out", str(out)]) == 0
    views = numbers(out)
    assert list(views) == list(VIEWS)
    page = (out / "index.html").read_text()
    for name, view in views.items():
        assert bool(view["skipped"]) == (name == "training"), name
        for fig in view["figures"]:
            assert f'src="{fig}"' in page
            with Image.open(out / fig) as im:
                assert im.width > 100 and im.height > 50, fig
    # Developing: x̂0 approaches the sample; the first steps change coarse structure, the last fine detail
    dev = views["developing"]["numbers"]
    err = dev["x0_rms_error_to_final"]
    assert err[-1] < 0.3 * err[0] and sum(b < a for a, b in zip(err, err[1:])) >= 0.7 * (len(err) - 1)
    assert dev["sigma"] == sorted(dev["sigma"], reverse=True)
    # Water on the trained model: accurate at large σ, streams at small σ end in the data's modes
    water = views["water"]["numbers"]
    assert water["relative_score_error"][0] < 0.05
    assert water["ascent_ends_near_data_mode"][-1] > 0.5
    assert views["paths"]["numbers"]["modes_reached"]["Langevin, no noise"] < 8
    # Noise levels: SNR rises along every grid; the loss per σ is measured on the model's own data
    levels = views["noise_levels"]["numbers"]
    for name, grid in levels["grids"].items():
        assert grid["log_snr"] == sorted(grid["log_snr"]), name
    assert sum(levels["calls_per_band"]["euler"]) == 16
    loss = levels["loss_per_sigma"]["x0_mse"]
    assert loss[0] < 0.01 < loss[-1]  # small σ: almost nothing to remove; large σ: only the average is known
    # Guidance: a share of clipped pixels per w; D_c − D_∅ measured at every step, largest early
    g = views["guidance"]["numbers"]
    assert len(g["clipped_share"]) == 8 and all(0 <= c <= 1 for c in g["clipped_share"])
    diff = g["difference_mean_abs"]
    assert len(diff) == len(dev["sigma"]) and max(diff[:4]) > max(diff[-4:])
    # Steps: a second-order sampler at 100 calls is within a grey level of the converged image
    steps = views["steps"]["numbers"]
    assert steps["distance"]["dpmpp_2m"][-1] < 2 / 255 < steps["distance"]["dpmpp_2m"][0]
    assert "wrote" in capsys.readouterr().out


def test_explain_on_a_run_folder_draws_its_checkpoints_and_log(tmp_path, digits_run):
    out = tmp_path / "explain"
    assert (
        main(
            [
                "explain",
                "--model",
                str(digits_run),
                "--out",
                str(out),
                "--prompt",
                "3",
                "--views",
                "training,noise_levels",
            ]
        )
        == 0
    )
    views = numbers(out)
    tr = views["training"]["numbers"]
    assert tr["step"] == [10, 20, 30, 40]
    assert tr["distance_to_final"][-1] == 0.0  # the last checkpoint's EMA is the final model
    assert max(tr["distance_to_final"]) > 0
    levels = views["noise_levels"]["numbers"]
    assert (
        levels["run_log"]["steps"] == 40 and levels["run_log"]["last_loss"] < levels["run_log"]["first_loss"]
    )
    assert "loss-per-sigma.png" in views["noise_levels"]["figures"]


def test_developing_and_guidance_on_the_bundled_shapes_model(tmp_path):
    model = bundled_model("shapes")
    inp = Inputs(model=model, out=tmp_path, prompt="a large red circle in the center", nfe=12)
    dev, guid = explain(inp, ["developing", "guidance"])
    err = dev.numbers["x0_rms_error_to_final"]
    assert err[-1] < 0.25 * err[0]
    low = dev.numbers["change_low_share"]
    assert sum(low[:3]) / 3 > sum(low[-3:]) / 3 + 0.2  # coarse first, fine last
    clipped = guid.numbers["clipped_share"]
    assert clipped[-1] > clipped[1]  # w = 8 pushes more pixels out of range than w = 2
    diff = guid.numbers["difference_mean_abs"]
    assert diff[0] > diff[-1]  # the prompt matters most at large σ, where the layout is decided
    write_index([dev, guid], tmp_path, "t", {"model": "shapes"})
    assert "coarse" in (tmp_path / "index.html").read_text()


def test_views_that_do_not_apply_say_why(tmp_path):
    mix = data_mixture(GAUSSIANS8)
    inp = Inputs(model=bundled_model("digits"), out=tmp_path, prompt="3")
    water, training = explain(inp, ["water", "training"])
    assert "points model" in water.skipped and "run" in training.skipped
    with pytest.raises(ValueError, match="unknown explain view"):
        explain(Inputs(model=mix, out=tmp_path), ["colours"])


def test_import_rill_does_not_import_matplotlib():
    code = "import rill, rill.viz, rill.app.cli, sys; print('matplotlib' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_explain_refuses_a_non_points_model_for_water(tmp_path):
    from rill.app.common import bundled_path

    rc = main(
        [
            "explain",
            "--model",
            "digits",
            "--points",
            str(bundled_path("digits")),
            "--out",
            str(tmp_path),
            "--views",
            "water",
        ]
    )
    assert rc == 2
    load_model(bundled_path("digits"))  # the refusal did not corrupt anything
