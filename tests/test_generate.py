"""generate(): shapes and range, per-sample seeds, negative prompts, guidance; explain helpers."""

from __future__ import annotations

import pytest
import torch
from _models import tiny_digits_model

from rill.inference.generate import generate, pick_device
from rill.model import DiffusionModel
from rill.viz import denoising_strip, make_grid, save_gif, save_grid, to_uint8

torch.set_num_threads(1)


def tiny_model(seed: int = 0) -> DiffusionModel:
    return tiny_digits_model(seed)


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    return tiny_model()


def test_shape_range_and_order(model):
    out = generate(model, ["a 3", "the number seven"], n=2, nfe=4, seed=0)
    assert out.shape == (4, 1, 8, 8)
    assert out.min() >= -1 and out.max() <= 1 and torch.isfinite(out).all()
    # prompt-major: rows 0, 1 are "a 3"; rows 2, 3 are "seven" with the same seeds -> not equal to rows 0, 1
    assert not torch.equal(out[0], out[2])
    assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("sampler", ["auto", "euler_ancestral"])
def test_per_sample_seeds_do_not_depend_on_n(model, sampler):
    four = generate(model, "a handwritten digit 7", n=4, nfe=4, sampler=sampler, seed=10)
    one = generate(model, "a handwritten digit 7", n=1, nfe=4, sampler=sampler, seed=12)
    torch.testing.assert_close(four[2], one[0], rtol=1e-5, atol=1e-5)  # 3rd image of -n 4 == seed + 2
    again = generate(model, "a handwritten digit 7", n=4, nfe=4, sampler=sampler, seed=10)
    torch.testing.assert_close(four, again, rtol=0, atol=0)


def test_seed_changes_output(model):
    a = generate(model, "a 5", nfe=4, seed=0)
    b = generate(model, "a 5", nfe=4, seed=1)
    assert (a - b).abs().max() > 1e-3


def test_negative_prompt_changes_output(model):
    plain = generate(model, "a 5", nfe=4, guidance=3.0, seed=0)
    neg = generate(model, "a 5", negative="a 3", nfe=4, guidance=3.0, seed=0)
    assert (plain - neg).abs().max() > 1e-3
    # without guidance the negative prompt plays no part
    p1 = generate(model, "a 5", nfe=4, guidance=1.0, seed=0)
    n1 = generate(model, "a 5", negative="a 3", nfe=4, guidance=1.0, seed=0)
    torch.testing.assert_close(p1, n1, rtol=0, atol=0)


def test_guidance_one_differs_from_guidance_three(model):
    g1 = generate(model, "a 5", nfe=4, guidance=1.0, seed=0)
    g3 = generate(model, "a 5", nfe=4, guidance=3.0, seed=0)
    assert (g1 - g3).abs().max() > 1e-3


def test_callback_sees_every_step(model):
    seen = []
    generate(
        model,
        "a 1",
        nfe=6,
        sampler="euler",
        seed=0,
        callback=lambda i, x, s, x0: seen.append((i, s, tuple(x0.shape))),
    )
    assert [i for i, _, _ in seen] == list(range(6))
    assert all(shape == (1, 1, 8, 8) for _, _, shape in seen)
    sigmas = [s for _, s, _ in seen]
    assert sigmas == sorted(sigmas, reverse=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n"),
        ({"nfe": 0}, "nfe"),
        ({"seed": -1}, "seed"),
        ({"guidance": float("nan")}, "guidance"),
        ({"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min"),
        ({"device": "banana"}, "device"),
    ],
)
def test_bad_arguments_name_themselves(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model, "a 1", **{"nfe": 2, **kwargs})


def test_pick_device_defaults():
    assert pick_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert pick_device(None).type == expected
    elif not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        assert pick_device(None).type == "cpu"


# --- explain ------------------------------------------------------------------------------------------------
def test_grid_layout_and_uint8():
    imgs = torch.stack([torch.full((3, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    grid = make_grid(imgs, nrow=2, padding=1, pad_value=1.0)
    assert grid.shape == (3, 2 * 5 + 1, 2 * 5 + 1)
    assert torch.equal(grid[:, 1:5, 1:5], imgs[0]) and torch.equal(grid[:, 1:5, 6:10], imgs[1])
    assert torch.equal(grid[:, 6:10, 1:5], imgs[2])
    u = to_uint8(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]))
    assert u.tolist() == [0, 0, 128, 255, 255]


def test_save_grid_and_gif_decode(tmp_path):
    from PIL import Image

    imgs = torch.rand(5, 1, 8, 8) * 2 - 1
    path = save_grid(imgs, tmp_path / "g.png", nrow=5, scale=3)
    with Image.open(path) as im:
        assert im.size == ((5 * 9 + 1) * 3, (9 + 1) * 3) and im.mode == "L"
    gif = save_gif(list(imgs), tmp_path / "a.gif", scale=2)
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == (16, 16)


def test_denoising_strip_records_every_step(model, tmp_path):
    from PIL import Image

    strip = denoising_strip(model, "a 4", nfe=5, sampler="euler", seed=3)
    assert len(strip.sigmas) == 5 and strip.x0s.shape == (5, 1, 8, 8) and strip.xs.shape == (5, 1, 8, 8)
    assert strip.sigmas == sorted(strip.sigmas, reverse=True)
    final = generate(model, "a 4", nfe=5, sampler="euler", seed=3)[0]
    torch.testing.assert_close(strip.final, final)
    # x̂0 at the last step is (nearly) the returned sample; at the first step it is far from it
    assert (strip.x0s[-1] - final).abs().max() < (strip.x0s[0] - final).abs().max()
    with Image.open(strip.save(tmp_path / "strip.png", scale=2, columns=4)) as im:
        assert im.width == (5 * 9 + 1) * 2  # 4 steps + the final column
    with Image.open(strip.save_gif(tmp_path / "strip.gif", scale=2)) as im:
        assert im.n_frames == 6


def test_unconditional_non_image_model_is_not_clamped():
    from rill.model import ModelConfig as MC
    from rill.samplers import sample

    # a fresh MLP predicts F = 0, so D(x; σ) = c_skip·x and samples end near σ_data·n: far outside [-1, 1]
    model = DiffusionModel(
        MC(net="mlp", net_preset="tiny", shape=(2,), text_encoder=None, sigma_data=3.0)
    ).eval()
    out = generate(model, "", n=8, nfe=4, seed=0)
    assert out.shape == (8, 2) and out.abs().max() > 1
    gens = [torch.Generator().manual_seed(j) for j in range(8)]
    noise = torch.stack([torch.randn(2, generator=g) for g in gens])
    with torch.no_grad():
        ref = sample(model.denoiser, noise, nfe=4, sigma_min=0.002, sigma_max=80.0, generator=gens)
    torch.testing.assert_close(out, ref)
