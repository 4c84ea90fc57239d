"""The full-resolution output refinement (refine_channels) of the patch-folded backbones: off by default, a
zero start that keeps a trained net's function, and a trainable correction at full resolution."""

import dataclasses

import pytest
import torch

from rill.nets.dit import DiT, DiTConfig
from rill.nets.unet import UNet2D, UNet2DConfig

torch.set_num_threads(1)

UNET = UNet2DConfig(in_channels=3, image_size=16, patch_size=4, channels=16, channel_mult=(1, 2),
                    num_res_blocks=1, emb_dim=32)  # fmt: skip
DIT = DiTConfig(image_size=16, patch_size=4, width=32, depth=1, head_dim=16, noise_features=16)


def _perturbed(net: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a "trained" net: the zero-initialised output layers are not zero any more
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("cls, cfg", [(UNet2D, UNET), (DiT, DIT)])
def test_refine_is_off_by_default_and_starts_as_the_same_function(cls, cfg):
    assert cfg.refine_channels == 0 and cls(cfg).refine is None
    torch.manual_seed(0)
    base = _perturbed(cls(cfg)).eval()
    refined = cls(dataclasses.replace(cfg, refine_channels=8)).eval()
    missing, unexpected = refined.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("refine.") for k in missing)
    x, c = torch.randn(2, 3, 16, 16), torch.randn(2)
    with torch.no_grad():
        assert torch.equal(refined(x, c), base(x, c))  # bit for bit: a shipped model can continue training


@pytest.mark.parametrize("cls, cfg", [(UNet2D, UNET), (DiT, DIT)])
def test_refine_learns_a_full_resolution_correction(cls, cfg):
    torch.manual_seed(0)
    net = cls(dataclasses.replace(cfg, refine_channels=8))
    x, c = torch.randn(2, 3, 16, 16), torch.randn(2)
    (net(x, c) - x).square().mean().backward()  # a fresh net returns 0: the loss must not be 0 there
    assert net.refine.conv_out.weight.grad.abs().sum() > 0  # the zero layer gets a gradient
    with torch.no_grad():
        net.refine.conv_out.weight.normal_()
    out = net(x, c)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_refine_channels_must_not_be_negative():
    with pytest.raises(ValueError, match="refine_channels"):
        dataclasses.replace(UNET, refine_channels=-1)
    with pytest.raises(ValueError, match="refine_channels"):
        dataclasses.replace(DIT, refine_channels=-1)
