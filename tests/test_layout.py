"""The layout's promises: registries instead of if-chains, editing hooks (start at any σ, denoiser wrappers),
named tensor groups in model files, and no hidden side effects."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _models import tiny_digits_model
from torch import nn

import rill
from rill.core.mixture import GaussianMixture
from rill.core.parametrisations import PARAMETRISATIONS, ParamSettings, get_parametrisation, register
from rill.inference import generate
from rill.model import DiffusionModel, ModelConfig, TensorGroup, load_model, net_fingerprint, save_model
from rill.model.files import load_group, read_safetensors, save_group
from rill.nets import NETS, CondSpec
from rill.samplers import INFO, SAMPLERS, sample, sigmas_for
from rill.samplers import register as register_sampler


# --- registries ---------------------------------------------------------------------------------------------
def test_every_sampler_is_registered_once_with_its_facts():
    assert list(SAMPLERS) == list(INFO) and len(SAMPLERS) >= 11
    assert all(INFO[name].name == name for name in SAMPLERS)
    with pytest.raises(ValueError, match="registered twice"):
        register_sampler("euler", order=1, stochastic=False, description="again")(lambda *a, **k: None)


def test_parametrisation_names_are_one_table():
    assert set(PARAMETRISATIONS) == {"edm", "epsilon", "v", "x0", "flow"}
    with pytest.raises(ValueError, match="unknown parametrisation 'v_prediction'.*'v'"):
        get_parametrisation("v_prediction")


@pytest.mark.parametrize("name", ["edm", "epsilon", "v", "x0", "flow"])
def test_each_parametrisation_trains_through_the_model(name):
    model = DiffusionModel(
        ModelConfig(net_preset="tiny", shape=(1, 8, 8), text_encoder="digits", parametrisation=name)
    )
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    loss = model.loss(x0, model.encode(["3", "4", "", "7"]), generator=torch.Generator().manual_seed(0))
    assert loss.shape == (4,) and torch.isfinite(loss).all() and (loss > 0).all()
    loss.mean().backward()  # gradients reach the backbone
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())


def test_a_new_parametrisation_is_one_class_and_one_registration():
    """Register a toy parametrisation (D = the net's output) and use it in a model without touching rill."""

    @register("test-identity")
    class Identity(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        @classmethod
        def build(cls, net, settings: ParamSettings):
            return cls(net)

        @staticmethod
        def sigma_range(settings):
            return 0.01, 10.0

        def forward(self, x, sigma, cond=None):
            return self.net(x, sigma.log() / 4, cond)

        def loss(self, x0, cond=None, *, generator=None, **_):
            return ((self(x0, torch.ones(len(x0)), cond) - x0) ** 2).flatten(1).mean(1)

    try:
        model = DiffusionModel(
            ModelConfig(shape=(1, 8, 8), text_encoder=None, parametrisation="test-identity")
        )
        assert (model.config.sigma_min, model.config.sigma_max) == (0.01, 10.0)
        assert model.loss(torch.zeros(2, 1, 8, 8)).shape == (2,)
    finally:
        del PARAMETRISATIONS["test-identity"]


def test_backbones_declare_the_fields_a_shape_implies():
    assert NETS["unet2d"].fields_for((3, 32, 32), CondSpec(token_dim=384, pooled_dim=384))["image_size"] == 32
    assert NETS["mlp"].fields_for((2,), CondSpec(num_classes=5)) == {
        "dim": 2,
        "pooled_dim": 0,
        "num_classes": 5,
    }
    no_tokens = NETS["unet1d"].fields_for((1, 64), CondSpec())
    assert no_tokens["cross_attn_resolutions"] == () and no_tokens["length"] == 64
    with pytest.raises(ValueError, match=r"unet2d needs a square \(C, H, W\)"):
        NETS["unet2d"].fields_for((3, 32, 16), CondSpec())


# --- editing hooks ------------------------------------------------------------------------------------------
def test_sample_from_sigma_start_spends_the_whole_budget_on_the_rest():
    gm = GaussianMixture.random(4, 3, seed=1)
    calls: list[float] = []

    def counting(x, sigma, cond=None):
        calls.append(float(sigma[0]))
        return gm(x, sigma, cond)

    start = gm.sample(6, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = sample(counting, noise, nfe=7, sampler="dpmpp_2m", start=start, sigma_start=2.0)
    assert len(calls) == 7 and calls[0] == pytest.approx(2.0) and max(calls) <= 2.0 + 1e-12
    assert out.shape == start.shape and torch.isfinite(out).all()
    # the σ_start walk is the same grid family, rescaled to begin at σ_start
    grid = sigmas_for("dpmpp_2m", 7, sigma_max=2.0)
    assert grid[0].item() == pytest.approx(2.0)
    for bad in (80.5, 0.001):
        with pytest.raises(ValueError, match="sigma_start"):
            sample(gm, noise, nfe=4, start=start, sigma_start=bad)


def test_sample_from_sigma_start_with_tiny_sigma_returns_the_start():
    gm = GaussianMixture.random(4, 3, seed=2)
    start = gm.sample(5, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = sample(gm, noise, nfe=4, sampler="euler", start=start, sigma_start=0.0021)
    assert (out - start).abs().max() < 0.01  # barely noised, then denoised: the start comes back


def test_generate_wrap_sees_every_call_and_can_change_the_result():
    model = tiny_digits_model()
    seen = []

    def wrap(denoiser):
        def wrapped(x, sigma, cond=None):
            seen.append(float(sigma[0]))
            return torch.zeros_like(x)  # a wrapper that overrides the model entirely

        return wrapped

    out = generate(model, "3", n=2, nfe=5, sampler="euler", wrap=wrap, seed=0)
    assert len(seen) == 5 and out.abs().max() < 1e-6  # the wrapper, not the net, decided


def test_generate_start_at_sigma_start_keeps_per_sample_seeds():
    model = tiny_digits_model()
    start = torch.rand(1, 8, 8) * 2 - 1
    both = generate(model, "5", n=3, nfe=6, start=start, sigma_start=3.0, seed=4)
    last = generate(model, "5", n=1, nfe=6, start=start, sigma_start=3.0, seed=6)
    torch.testing.assert_close(both[2], last[0], rtol=1e-5, atol=1e-5)  # batch size changes only rounding
    with pytest.raises(ValueError, match="start has shape"):
        generate(model, "5", n=2, nfe=4, start=torch.zeros(3, 1, 8, 8), sigma_start=1.0)


# --- no hidden side effects ---------------------------------------------------------------------------------
def test_generate_does_not_switch_or_move_the_callers_model():
    model = tiny_digits_model().train()
    generate(model, "3", nfe=3, seed=0)
    assert model.training, "generate() must restore the caller's train mode"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            generate(model, "3", nfe=3, device="cuda")
    assert model.device.type == "cpu"


def test_reading_a_property_never_loads_the_text_encoder():
    model = DiffusionModel(ModelConfig(shape=(1, 8, 8), text_encoder="minilm"))  # sized without loading it
    assert model.text_encoder is None and model.conditional
    assert model.device.type == "cpu" and model.text_encoder is None


def test_train_does_not_rewrite_the_callers_config(tmp_path):
    from rill.model.config import config_to_dict
    from rill.train import train, train_preset

    cfg = train_preset("digits", steps=2, batch_size=8, out_dir=str(tmp_path / "run"), sample_every=0,
                       checkpoint_every=0, log_every=1, **{"model.text_encoder": "digits"})  # fmt: skip
    before = json.dumps(config_to_dict(cfg), sort_keys=True)
    train(cfg, progress=False)
    assert json.dumps(config_to_dict(cfg), sort_keys=True) == before


# --- tensor groups in model files ---------------------------------------------------------------------------
def _group(model, name="extra", **kw) -> TensorGroup:
    return TensorGroup(
        name, "test", {"a": torch.arange(6.0).reshape(2, 3)}, net_fingerprint(model), {"rank": 2}, **kw
    )


def test_model_files_carry_named_tensor_groups(tmp_path):
    model = tiny_digits_model()
    model.groups["extra"] = _group(model)
    path = save_model(model, tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(path)
    assert "extra.a" in tensors and json.loads(meta["rill.groups"])["extra"]["meta"] == {"rank": 2}
    again = load_model(path)
    g = again.groups["extra"]
    assert (
        g.kind == "test"
        and g.meta == {"rank": 2}
        and torch.equal(g.tensors["a"], torch.arange(6.0).reshape(2, 3))
    )
    x = torch.randn(2, 1, 8, 8)
    s = torch.full((2,), 0.7)
    torch.testing.assert_close(
        again.denoiser(x, s, again.encode(["1", "2"])), model.denoiser(x, s, model.encode(["1", "2"]))
    )


def test_a_group_for_another_backbone_is_refused(tmp_path):
    model, other = (
        tiny_digits_model(),
        DiffusionModel(ModelConfig(net_preset="tiny", shape=(1, 8, 8), text_encoder="digits")),
    )
    assert net_fingerprint(model) != net_fingerprint(other)  # 16 vs 32 channels
    path = save_group(_group(model), tmp_path / "adapter.safetensors")
    assert load_group(path, model).name == "extra"
    with pytest.raises(
        ValueError, match="was made for the backbone .* load it onto the model it was trained from"
    ):
        load_group(path, other)
    with pytest.raises(ValueError, match="was made for the backbone"):
        save_model(other, tmp_path / "o.safetensors", groups=[_group(model)])


def test_undeclared_extra_tensors_are_refused(tmp_path):
    from rill.model.files import atomic_save_safetensors

    model = tiny_digits_model()
    tensors, meta = read_safetensors(save_model(model, tmp_path / "m.safetensors"))
    atomic_save_safetensors({**tensors, "lora.x": torch.zeros(2)}, tmp_path / "bad.safetensors", meta)
    with pytest.raises(ValueError, match=r"unexpected tensors \['lora.x'\].*rill.groups"):
        load_model(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="not allowed"):
        TensorGroup("net", "test", {}, "")


def test_top_level_names_stay_lazy_and_resolve():
    assert rill.sample is sample and callable(rill.generate) and rill.GaussianMixture is GaussianMixture
    assert math.isclose(rill.EDMPrecond(nn.Identity()).sigma_data, 0.5)
