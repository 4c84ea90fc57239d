"""Contracts of rill.eval.clean_check: real renders are clean; planted speckle and blobs are measured."""

import numpy as np
import pytest
import torch

from rill.data import load_dataset
from rill.data.shapes import BACKGROUND, parse_caption, render_scene
from rill.eval.clean_check import BLOB_THRESHOLD, background_mask, background_std, clean_summary, patch_blobs

CAPTION = "a small red circle in the top left"


def _render(caption: str = CAPTION) -> torch.Tensor:
    return torch.from_numpy(render_scene(parse_caption(caption))).permute(2, 0, 1).float() / 127.5 - 1


@pytest.fixture(scope="module")
def real():
    ds = load_dataset("shapes", split="all", n=60, seed=3)
    return torch.stack([ds[i][0] for i in range(len(ds))]), [ds.caption(i) for i in range(len(ds))]


def test_real_renders_are_clean(real):
    images, captions = real
    out = clean_summary(images, captions)
    assert out["blobs"] == 0 and out["blob_images"] == 0.0
    assert out["background_std"] < 1e-4
    assert clean_summary(images)["blobs"] == 0  # without captions too


def test_background_mask_leaves_out_the_shape_and_its_edges():
    image = _render()
    bg = background_mask(image, CAPTION)
    assert 0.7 < bg.mean() < 0.99
    flat = (image - (torch.tensor(BACKGROUND) / 127.5 - 1)[:, None, None]).abs().amax(0).numpy() < 1e-6
    assert not (bg & ~flat).any()  # no anti-aliased edge pixel counts as background


def test_speckle_std_is_measured_and_makes_no_blob():
    g = torch.Generator().manual_seed(0)
    image = (_render() + 0.05 * torch.randn(3, 32, 32, generator=g)).clamp(-1, 1)
    assert background_std(image, CAPTION) == pytest.approx(0.05, rel=0.12)
    assert patch_blobs(image, CAPTION) == []


@pytest.mark.parametrize("top_left, on_grid", [((21, 22), False), ((20, 24), True)])
def test_a_planted_patch_blob_is_found(top_left, on_grid):
    image = _render()
    i, j = top_left
    g = torch.Generator().manual_seed(1)
    # a multicoloured 4×4 smudge: random colours whose mean sits 0.3 from the background
    blob = torch.tensor([0.3, -0.1, 0.15])[:, None, None] + 0.2 * torch.randn(3, 4, 4, generator=g)
    image[:, i : i + 4, j : j + 4] += blob
    found = patch_blobs(image, CAPTION)
    assert len(found) == 1
    x, y = found[0]["center"]
    assert abs(x * 32 - (j + 2)) <= 1 and abs(y * 32 - (i + 2)) <= 1
    assert found[0]["deviation"] > BLOB_THRESHOLD
    assert found[0]["on_grid"] == on_grid
    out = clean_summary(torch.stack([image, _render()]), [CAPTION, CAPTION])
    assert out["blob_images"] == 0.5 and out["per_image_blobs"] == [1, 0]


def test_a_faint_patch_is_not_a_blob():
    image = _render()
    image[:, 21:25, 21:25] += 0.5 * BLOB_THRESHOLD / np.sqrt(3)
    assert patch_blobs(image, CAPTION) == []


def test_an_extra_object_counts_as_a_blob_against_its_caption():
    two = _render("a large blue square to the left of a small yellow triangle")
    assert patch_blobs(two, "a large blue square to the left of a small yellow triangle") == []
    assert len(patch_blobs(two, "a large blue square in the center")) == 1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="RGB"):
        clean_summary(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="captions"):
        clean_summary(torch.zeros(2, 3, 32, 32), [CAPTION])
