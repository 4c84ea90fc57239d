"""The DiT backbone (rill.nets.dit): shapes, zero-init (identity-plus-skip), conditioning, the padding mask,
gradients, errors, and the model-file round trip."""

from __future__ import annotations

import pytest
import torch
from test_nets import _one_thread, perturb_  # noqa: F401  (the one-thread fixture applies here too)

from rill.model import DiffusionModel, ModelConfig, load_model, save_model
from rill.nets import NETS, CondSpec, DiT, build_net, net_config
from rill.nets.dit import sincos_2d

D = 24  # token / pooled width of the test nets
SMALL = dict(in_channels=3, image_size=8, patch_size=2, width=32, depth=2, head_dim=16, noise_features=16,
             context_dim=D, pooled_dim=D, num_classes=5)  # fmt: skip


def small(**overrides) -> DiT:
    torch.manual_seed(0)
    return build_net("dit", None, **{**SMALL, **overrides})


def cond(B: int = 3, L: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False
    tokens, pooled = torch.randn(B, L, D, generator=g), torch.randn(B, D, generator=g)
    return {"tokens": tokens, "mask": mask, "pooled": pooled, "labels": torch.arange(B) % 5}


def x_and_noise(B: int = 3, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(B, 3, size, size, generator=g), torch.randn(B, generator=g)


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_shapes_for_each_patch_size_and_out_channels(patch):
    net = perturb_(small(patch_size=patch, out_channels=6))
    x, c = x_and_noise()
    out = net(x, c, cond())
    assert out.shape == (3, 6, 8, 8) and torch.isfinite(out).all()
    assert net.pos.shape == (1, (8 // patch) ** 2, 32) and "pos" not in net.state_dict()


def test_positions_are_distinct_sin_cos():
    pos = sincos_2d(32, 4)
    assert pos.shape == (16, 32) and pos.abs().max() <= 1
    assert torch.cdist(pos, pos).add(torch.eye(16) * 10).min() > 0.1  # every cell has its own code


def test_fresh_net_is_zero_so_the_model_is_its_skip_path():
    net = small()
    x, c = x_and_noise()
    with torch.no_grad():
        assert torch.count_nonzero(net(x, c, cond())) == 0
    sigma = torch.tensor([0.1, 1.0, 10.0])
    for name, skip in (("edm", 0.25 / (sigma**2 + 0.25)), ("flow", 1 / (1 + sigma))):
        over = dict(SMALL, num_classes=0)
        cfg = ModelConfig(net="dit", net_preset=None, net_overrides=over, shape=(3, 8, 8), text_encoder=None,
                          parametrisation=name)  # fmt: skip
        model = DiffusionModel(cfg)
        with torch.no_grad():
            torch.testing.assert_close(model.denoiser(x, sigma), skip[:, None, None, None] * x)


def test_conditioning_changes_the_output_once_weights_are_perturbed():
    net = perturb_(small()).eval()
    x, c = x_and_noise()
    full = cond()
    with torch.no_grad():
        out = net(x, c, full)
        variants = [
            net(x, c + 0.5, full),
            net(x, c, dict(full, tokens=full["tokens"].flip(0))),
            net(x, c, dict(full, pooled=full["pooled"].flip(0))),
            net(x, c, dict(full, labels=(full["labels"] + 1) % 5)),
            net(x, c, None),
        ]
    for other in variants:
        assert (out - other).abs().amax() > 1e-4


def test_padding_mask_really_masks():
    net = perturb_(small()).eval()
    x, c = x_and_noise()
    full = cond()
    full["mask"][1] = False  # row 1: only padding
    changed = dict(full, tokens=full["tokens"].clone())
    changed["tokens"][~full["mask"]] = 100.0 * torch.randn(int((~full["mask"]).sum()), D)
    with torch.no_grad():
        out, out_changed = net(x, c, full), net(x, c, changed)
        no_tokens = net(x, c, {k: v for k, v in full.items() if k not in ("tokens", "mask")})
    torch.testing.assert_close(out, out_changed, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], no_tokens[1], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    net = perturb_(small(dropout=0.1))
    x, c = x_and_noise()
    net(x, c, cond()).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_fields_for_and_errors_teach():
    fields = NETS["dit"].fields_for((3, 32, 32), CondSpec(token_dim=384, pooled_dim=384))
    assert fields == dict(in_channels=3, image_size=32, context_dim=384, pooled_dim=384, num_classes=0)
    with pytest.raises(ValueError, match="square"):
        NETS["dit"].fields_for((3, 32, 16), CondSpec())
    with pytest.raises(ValueError, match="divisible by patch_size"):
        small(image_size=10, patch_size=4)
    with pytest.raises(ValueError, match=r"shape \(B, 3, 8, 8\)"):
        small()(torch.randn(2, 3, 16, 16), torch.zeros(2))


def test_state_dict_round_trip_through_the_model_file(tmp_path):
    cfg = ModelConfig(net="dit", net_preset="tiny", net_overrides={"depth": 2}, shape=(3, 32, 32),
                      text_encoder="minilm", parametrisation="flow")  # fmt: skip
    model = DiffusionModel(cfg)  # MiniLM's width is known: nothing is loaded
    perturb_(model.net)
    assert model.net.config.context_dim == 384 and model.net.config.depth == 2
    path = save_model(model, tmp_path / "dit.safetensors")
    again = load_model(path)
    assert net_config(again.net) == net_config(model.net)
    assert again.config.parametrisation == "flow"
    sd, sd2 = model.net.state_dict(), again.net.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    x = torch.randn(2, 3, 32, 32)
    c = {"tokens": torch.randn(2, 4, 384), "pooled": torch.randn(2, 384)}
    with torch.no_grad():
        torch.testing.assert_close(model.denoiser(x, torch.tensor([0.5, 3.0]), c),
                                   again.denoiser(x, torch.tensor([0.5, 3.0]), c))  # fmt: skip
