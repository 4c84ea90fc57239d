"""Non-leaky shift augmentation: the shift, its label, the net reading it, and a training run using it."""

from __future__ import annotations

import pytest
import torch

from rill.nets.layers import CondEmbedding
from rill.train import TrainConfig
from rill.train.augment import shift_augment


def test_each_image_moves_by_its_label_and_the_border_is_replicated():
    x = torch.randn(64, 3, 6, 5)
    out, label = shift_augment(x, 2, 0.7, torch.Generator().manual_seed(3))
    assert label.shape == (64, 2) and label.abs().max() <= 1
    moved = 0
    for i in range(64):
        dx, dy = (label[i] * 2).round().long().tolist()
        moved += (dx, dy) != (0, 0)
        # output (r, c) = input (r - dy, c - dx), clamped at the border (replicate padding)
        rows = (torch.arange(6) - dy).clamp(0, 5)
        cols = (torch.arange(5) - dx).clamp(0, 4)
        assert torch.equal(out[i], x[i][:, rows][:, :, cols]), i
    assert 25 < moved < 64  # p = 0.7, and (0, 0) is also drawn sometimes


def test_probability_zero_leaves_every_image_and_a_zero_label():
    x = torch.randn(8, 1, 8, 8)
    out, label = shift_augment(x, 1, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and not label.any()


def test_the_same_generator_state_gives_the_same_shifts():
    x = torch.randn(16, 1, 8, 8)
    a = shift_augment(x, 1, 0.5, torch.Generator().manual_seed(5))
    b = shift_augment(x, 1, 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_non_images_get_a_clear_error():
    with pytest.raises(ValueError, match="augment_p=0"):
        shift_augment(torch.randn(4, 2, 16), 1, 0.5, torch.Generator())


def test_no_label_reads_as_not_augmented_and_a_label_changes_the_embedding():
    emb = CondEmbedding(32, 16, augment_dim=2)
    torch.nn.init.normal_(emb.augment_proj.weight)
    c = torch.rand(3)
    absent = emb(c, None, 3)
    assert torch.allclose(absent, emb(c, {"augment": torch.zeros(3, 2)}, 3))
    assert not torch.allclose(absent, emb(c, {"augment": torch.ones(3, 2)}, 3))


@pytest.mark.parametrize("field, value", [("augment_p", 1.5), ("augment_p", -0.1), ("augment_shift", 0)])
def test_bad_augment_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_a_run_with_augmentation_records_augment_dim_and_its_model_samples(tmp_path):
    from rill.inference import generate
    from rill.model import load_model
    from rill.train import train, train_preset

    cfg = train_preset("digits", steps=3, sample_every=0, checkpoint_every=0, out_dir=str(tmp_path / "run"),
                       augment_p=0.5, **{"model.text_encoder": None, "model.net_preset": "tiny"})  # fmt: skip
    model = load_model(train(cfg, progress=False))
    assert model.config.net_overrides["augment_dim"] == 2
    assert model.net.embed.augment_proj.weight.shape[1] == 2
    assert generate(model, [""], n=2, nfe=3, guidance=1.0).shape == (2, 1, 8, 8)
