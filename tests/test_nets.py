"""Contract tests for the backbones in rill.nets: shapes, conditioning, masking, gradients, configs."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import rill.nets
from rill.nets import MLP, NETS, DiT, UNet1D, UNet2D, build_net, count_parameters, net_config, preset_table
from rill.nets.layers import patchify, unpatchify

PRESETS = {kind: entry.presets for kind, entry in NETS.items()}

D = 24  # token / pooled width in the small test nets

# Small nets with every conditioning path switched on (fast on CPU).
SMALL = {
    "unet2d": dict(
        in_channels=3, image_size=8, channels=16, channel_mult=(1, 2), num_res_blocks=1,
        attn_resolutions=(4,), cross_attn_resolutions=(8, 4), context_dim=D, pooled_dim=D, num_classes=5,
        head_dim=8,
    ),
    "unet1d": dict(
        in_channels=2, length=16, channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
        cross_attn_resolutions=(16,), mid_attn=True, context_dim=D, pooled_dim=D, num_classes=5, head_dim=8,
    ),
    "mlp": dict(dim=3, hidden=32, num_blocks=2, pooled_dim=D, num_classes=5),
}  # fmt: skip
SHAPES = {"unet2d": (3, 8, 8), "unet1d": (2, 16), "mlp": (3,)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny nets run faster on one thread, and OpenMP spin-waits are ruinous on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_net(kind: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return build_net(kind, **{**SMALL[kind], **overrides})


def full_cond(B: int, L: int = 5, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, 3:] = False  # row 0 has padding
    return {
        "tokens": torch.randn(B, L, D, generator=g),
        "mask": mask,
        "pooled": torch.randn(B, D, generator=g),
        "labels": torch.arange(B) % 5,
    }


def perturb_(net: nn.Module, std: float = 0.1) -> nn.Module:
    """Give the zero-initialised parameters (output convs, attention outputs, null tokens) random values."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return net


def inputs(kind: str, B: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(B, *SHAPES[kind], generator=g), torch.randn(B, generator=g)


# --- shapes ------------------------------------------------------------------------------------------------


def _preset_input(net: nn.Module, B: int, native_size: bool) -> torch.Tensor:
    cfg = net.config
    if isinstance(net, MLP):
        return torch.randn(B, cfg.dim)
    if isinstance(net, DiT):  # a transformer's positions fix its input size
        return torch.randn(B, cfg.in_channels, cfg.image_size, cfg.image_size)
    size = (cfg.image_size if isinstance(net, UNet2D) else cfg.length) if native_size else net.min_size
    return torch.randn(B, cfg.in_channels, *(size,) * net.dims)


@pytest.mark.parametrize("kind,preset", [(k, p) for k, ps in PRESETS.items() for p in ps])
def test_preset_shapes(kind: str, preset: str) -> None:
    torch.manual_seed(0)
    net = build_net(kind, preset)
    B = 2
    # the big presets run at their smallest legal input size (convolutions work at any multiple of it)
    x, c_noise = _preset_input(net, B, native_size=preset != "base"), torch.randn(B)
    cfg = net.config
    cond = {}
    if getattr(cfg, "context_dim", 0):
        cond["tokens"] = torch.randn(B, 4, cfg.context_dim)
        cond["mask"] = torch.tensor([[True, True, False, False], [True] * 4])
    if cfg.pooled_dim:
        cond["pooled"] = torch.randn(B, cfg.pooled_dim)
    with torch.no_grad():
        for c in (None, cond):
            out = net(x, c_noise, c)
            assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", list(SMALL))
@pytest.mark.parametrize(
    "keys",
    [(), ("tokens",), ("tokens", "mask"), ("pooled",), ("labels",), ("tokens", "mask", "pooled", "labels")],
)
def test_any_cond_key_may_be_missing(kind: str, keys: tuple[str, ...]) -> None:
    net = perturb_(small_net(kind))
    x, c_noise = inputs(kind)
    cond = {k: v for k, v in full_cond(3).items() if k in keys}
    cond["control"] = torch.zeros(3, 1, 8, 8)  # reserved key: ignored
    with torch.no_grad():
        out = net(x, c_noise, cond or None)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_zero_init_output_and_scalar_c_noise() -> None:
    net = small_net("unet2d")
    x, _ = inputs("unet2d")
    with torch.no_grad():
        out = net(x, torch.tensor(0.3), full_cond(3))  # a scalar c_noise is broadcast to the batch
    assert out.shape == x.shape and torch.count_nonzero(out) == 0


def test_out_channels_and_patch_size() -> None:
    net = perturb_(small_net("unet2d", out_channels=6, patch_size=2, channel_mult=(1,), attn_resolutions=(4,),
                             cross_attn_resolutions=(4,)))  # fmt: skip
    x, c_noise = inputs("unet2d")
    assert net(x, c_noise).shape == (3, 6, 8, 8)
    for shape in [(2, 3, 8, 8), (2, 5, 12)]:
        t = torch.randn(*shape)
        assert torch.equal(unpatchify(patchify(t, 2), 2), t)
    t = torch.randn(2, 3, 8, 8)
    assert torch.equal(patchify(t, 2), nn.functional.pixel_unshuffle(t, 2))


# --- text cross-attention mask ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unet2d", "unet1d"])
def test_padding_mask_really_masks(kind: str) -> None:
    net = perturb_(small_net(kind)).eval()
    x, c_noise = inputs(kind)
    cond = full_cond(3)
    cond["mask"][1] = False  # row 1: every token is padding
    changed = dict(cond, tokens=cond["tokens"].clone())
    changed["tokens"][~cond["mask"]] = 100.0 * torch.randn(int((~cond["mask"]).sum()), D)
    with torch.no_grad():
        out, out_changed = net(x, c_noise, cond), net(x, c_noise, changed)
        no_tokens = net(x, c_noise, {k: v for k, v in cond.items() if k not in ("tokens", "mask")})
        unmasked = net(x, c_noise, {k: v for k, v in cond.items() if k != "mask"})
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, out_changed, atol=1e-6, rtol=0)
    # an all-masked row is the same as giving no tokens at all (only the learned null token is seen)
    torch.testing.assert_close(out[1], no_tokens[1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out[0], unmasked[0], atol=1e-4)  # the mask of row 0 matters


def test_wrong_token_width_is_explained() -> None:
    net = small_net("unet2d")
    x, c_noise = inputs("unet2d")
    with pytest.raises(ValueError, match="context_dim"):
        net(x, c_noise, {"tokens": torch.randn(3, 4, D + 1)})


# --- global conditioning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SMALL))
def test_pooled_and_labels_change_output(kind: str) -> None:
    net = perturb_(small_net(kind)).eval()
    x, c_noise = inputs(kind)
    cond = full_cond(3)
    with torch.no_grad():
        out = net(x, c_noise, cond)
        other_pooled = net(x, c_noise, dict(cond, pooled=cond["pooled"].flip(0)))
        other_labels = net(x, c_noise, dict(cond, labels=(cond["labels"] + 1) % 5))
        null_labels = net(x, c_noise, dict(cond, labels=torch.full((3,), -1)))
        no_labels = net(x, c_noise, {k: v for k, v in cond.items() if k != "labels"})
        other_noise = net(x, c_noise + 0.5, cond)
    for other in (other_pooled, other_labels, other_noise):
        assert (out - other).abs().amax() > 1e-4
    torch.testing.assert_close(null_labels, no_labels)  # label -1 = missing label = the null class


# --- gradients -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(SMALL))
def test_gradients_reach_every_parameter(kind: str) -> None:
    net = perturb_(small_net(kind, dropout=0.1))
    x, c_noise = inputs(kind, B=4)
    cond = full_cond(4)
    cond["labels"] = torch.tensor([0, 1, -1, 4])  # -1: the null class row is used too
    net(x, c_noise, cond).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --- presets, configs, factory ---------------------------------------------------------------------------


def test_build_net_errors_teach() -> None:
    with pytest.raises(ValueError, match=r"'unet3d'.*allowed.*mlp.*unet1d.*unet2d"):
        build_net("unet3d")
    with pytest.raises(ValueError, match=r"'huge'.*allowed.*base.*small.*tiny"):
        build_net("unet2d", "huge")
    with pytest.raises(ValueError, match=r"\['widht'\].*allowed.*channels"):
        build_net("unet2d", "tiny", widht=3)
    with pytest.raises(ValueError, match=r"attn_resolutions contains \[16\].*\[8, 4\]"):
        build_net("unet2d", "tiny", attn_resolutions=(16,))
    with pytest.raises(ValueError, match="divisible"):
        build_net("unet2d", "tiny", image_size=9)
    with pytest.raises(ValueError, match="context_dim"):
        build_net("unet2d", "small", context_dim=0)  # cross-attention resolutions set but no text width
    with pytest.raises(ValueError, match="dropout"):
        build_net("mlp", dropout=1.5)
    with pytest.raises(ValueError, match="divisible"):
        small_net("unet2d")(torch.randn(1, 3, 7, 7), torch.zeros(1))
    with pytest.raises(ValueError, match="not a rill backbone"):
        net_config(nn.Linear(2, 2))


@pytest.mark.parametrize("kind", list(SMALL))
def test_net_config_round_trip(kind: str) -> None:
    net = perturb_(small_net(kind)).eval()
    cfg = json.loads(json.dumps(net_config(net)))
    assert cfg["kind"] == kind and cfg == net_config(net)
    rebuilt = build_net(**cfg).eval()
    assert rebuilt.config == net.config
    assert count_parameters(rebuilt) == count_parameters(net)
    rebuilt.load_state_dict(net.state_dict())
    x, c_noise = inputs(kind)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, c_noise, full_cond(3)), net(x, c_noise, full_cond(3)))


def test_overrides_and_constructors_agree() -> None:
    a = build_net("unet2d", "tiny", num_classes=10)
    assert a.config.num_classes == 10 and a.config.image_size == 8
    b = UNet2D(PRESETS["unet2d"]["tiny"], num_classes=10)
    assert b.config == a.config and count_parameters(b) == count_parameters(a)
    assert isinstance(build_net("mlp", "tiny"), MLP) and isinstance(build_net("unet1d", "tiny"), UNet1D)
    assert build_net("unet2d", "tiny", in_channels=3).config.resolved_out_channels == 3


def test_preset_table_and_sizes() -> None:
    table = preset_table()
    for kind, presets in PRESETS.items():
        for name in presets:
            assert kind in table and name in table
    assert 300_000 <= count_parameters(build_net("unet2d", "tiny")) <= 800_000


def test_imports_are_light() -> None:
    """rill.nets imports only torch, the standard library and itself (never transformers / matplotlib)."""
    allowed = {"torch", "rill", "__future__", "dataclasses", "math", "typing", "collections"}
    for path in Path(rill.nets.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert {n.split(".")[0] for n in names} <= allowed, (path.name, names)
