"""Editing contracts: inpainting / outpainting keep the unmasked pixels bit for bit, img2img strength 0 is the
input and 1 is plain generation, every path works with every registered sampler, errors are one clear line,
and `rill edit` works end to end on real PNG files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _models import tiny_digits_model

from rill.app.cli import main
from rill.inference import generate
from rill.inference.edit import _noise, img2img, inpaint, outpaint, strength_to_sigma
from rill.inference.masks import KnownRegion, box_mask, feather
from rill.samplers import SAMPLERS
from rill.viz.images import save_png, to_uint8

PROMPT = "a handwritten digit 3"


@pytest.fixture(scope="module")
def model():
    return tiny_digits_model()


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture(scope="module")
def right_half():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[:, 4:] = True
    return m


def kept(images, image, mask):
    """True when every pixel outside `mask` equals the input's, bit for bit, in every result."""
    return bool((images[..., ~mask] == image[..., ~mask]).all())


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_inpaint_every_sampler_keeps_unmasked_pixels(model, image, right_half, sampler):
    for opts in ({}, {"repaint_jumps": 1, "nfe": 14}, {"blur": 1.0}):
        r = inpaint(model, image, right_half, PROMPT, n=2, seed=3, **{"nfe": 6, "sampler": sampler, **opts})
        assert r.images.shape == (2, 1, 8, 8) and torch.isfinite(r.images).all()
        assert kept(r.images, image, right_half), opts
        assert not torch.equal(r.images[:, :, right_half], image[:, right_half].expand(2, -1)), opts
        assert 0 < r.calls <= opts.get("nfe", 6)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_outpaint_every_sampler_keeps_the_original(model, image, sampler):
    left = image[:, :, :5]
    r = outpaint(
        model,
        left,
        (0, 0, 3, 0),
        PROMPT,
        n=2,
        nfe=6,
        sampler=sampler,
        repaint_jumps=1 if sampler == "euler" else 0,
    )
    assert r.images.shape == (2, 1, 8, 8)
    assert torch.equal(r.images[:, :, :, :5], left.expand(2, -1, -1, -1))


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_img2img_every_sampler(model, image, sampler):
    opts = dict(n=2, seed=4, nfe=6, sampler=sampler)
    zero = img2img(model, image, PROMPT, strength=0, **opts)
    assert torch.equal(zero.images, image.expand(2, -1, -1, -1)) and zero.calls == 0
    one = img2img(model, image, PROMPT, strength=1, **opts)
    assert torch.equal(one.images, generate(model, PROMPT, **opts))
    half = img2img(model, image, PROMPT, strength=0.5, **opts)
    assert torch.isfinite(half.images).all() and half.sigma_start == pytest.approx(math.sqrt(0.002 * 80))
    assert 0 < half.calls <= 6


def counting(model):
    """Wrap model.denoiser (the network's contract) to record the σ of every call."""
    seen, inner = [], model.denoiser

    def denoiser(x, sigma, cond=None):
        seen.append(float(sigma.flatten()[0]))
        return inner(x, sigma, cond)

    return denoiser, seen


def test_img2img_spends_nfe_from_sigma_start(image, monkeypatch):
    model = tiny_digits_model()
    denoiser, seen = counting(model)
    monkeypatch.setattr(model, "denoiser", denoiser)
    r = img2img(model, image, PROMPT, strength=0.1, nfe=12, sampler="euler")
    # 12 calls spent from σ_start, not diffusers' strength·steps (which would be 1)
    assert r.calls == len(seen) == 12
    assert seen[0] == pytest.approx(r.sigma_start) and r.sigma_start == pytest.approx(0.002**0.9 * 80**0.1)
    assert max(seen) <= r.sigma_start * (1 + 1e-6)


def test_repaint_counts_every_call_against_nfe(image, right_half, monkeypatch):
    model = tiny_digits_model()
    denoiser, seen = counting(model)
    monkeypatch.setattr(model, "denoiser", denoiser)
    r = inpaint(model, image, right_half, PROMPT, nfe=17, sampler="euler", repaint_jumps=1, jump_length=2)
    assert r.calls == len(seen) <= 17
    assert any(b > a for a, b in zip(seen, seen[1:])), "RePaint never jumped back up in σ"


def test_strength_maps_to_log_sigma_quantile():
    assert strength_to_sigma(0, 0.002, 80) == pytest.approx(0.002)
    assert strength_to_sigma(1, 0.002, 80) == pytest.approx(80)
    assert strength_to_sigma(0.25, 0.01, 100) == pytest.approx(0.1)
    values = [strength_to_sigma(s / 10, 0.002, 80) for s in range(11)]
    assert values == sorted(values)


@pytest.mark.parametrize("sampler", ["euler", "ddim", "dpmpp_2m", "heun", "unipc"])
def test_known_region_is_the_input_noised_with_the_samples_own_draw(model, image, right_half, sampler):
    """A deterministic sampler walks the known region along known + σ·ε_j, ε_j = generate()'s noise."""
    seeds = [5, 6]
    eps = _noise(seeds, (1, 8, 8))
    known = image.expand(2, -1, -1, -1)
    steps = []

    def record(i, x, sigma, x0):
        steps.append((sigma, x.clone()))

    wrap = lambda d: KnownRegion(d, known, right_half.float(), eps)  # noqa: E731
    start = known * ~right_half
    generate(model, PROMPT, n=2, seed=5, nfe=8, sampler=sampler, start=start, wrap=wrap, callback=record)
    assert len(steps) > 3
    for sigma, x in steps:
        want = known + sigma * eps
        assert torch.allclose(
            x[:, :, ~right_half], want[:, :, ~right_half], rtol=1e-4, atol=1e-5 + 1e-4 * sigma
        )


def test_samples_follow_their_own_seed(model, image, right_half):
    """Result j uses seed + j whatever n and the batch size: it does not depend on its batch neighbours."""
    for jumps in (0, 1):
        opts = dict(nfe=8, sampler="euler_ancestral", repaint_jumps=jumps)
        three = inpaint(model, image, right_half, PROMPT, n=3, seed=0, batch_size=2, **opts).images
        alone = inpaint(model, image, right_half, PROMPT, n=1, seed=2, **opts).images
        assert torch.allclose(three[2], alone[0], atol=1e-5)  # same noise; batch 1 vs 2: float rounding only
    assert not torch.equal(three[0], three[1])


def test_a_batch_of_images_is_one_result_each(model, image, right_half):
    batch = torch.stack([image, -image, image.flip(-1)])
    for jumps in (0, 1):
        r = inpaint(model, batch, right_half, PROMPT, seed=4, nfe=9, sampler="ddpm", repaint_jumps=jumps)
        assert kept(r.images, batch, right_half)
        one = inpaint(model, batch[1], right_half, PROMPT, seed=5, nfe=9, sampler="ddpm", repaint_jumps=jumps)
        assert torch.allclose(r.images[1], one.images[0], atol=1e-5)  # batch 3 vs 1: float rounding only
    r = img2img(model, batch, PROMPT, strength=0.4, seed=4, nfe=5)
    alone = img2img(model, batch[2], PROMPT, strength=0.4, seed=6, nfe=5).images[0]
    assert torch.allclose(r.images[2], alone, atol=1e-5)
    with pytest.raises(ValueError) as e:
        inpaint(model, batch, right_half, PROMPT, n=2)
    one_line(e, "3 images and n=2", "n=1")


def test_all_white_mask_is_plain_generation(model, image):
    r = inpaint(model, image, torch.ones(8, 8), PROMPT, n=2, nfe=5, seed=7, repaint_jumps=2)
    assert torch.equal(r.images, generate(model, PROMPT, n=2, nfe=5, seed=7))
    assert "plain generation" in r.note and r.calls == 5


def test_inverted_mask_and_feather(model, image, right_half):
    a = inpaint(model, image, right_half, PROMPT, nfe=4).images
    b = inpaint(model, image, ~right_half, PROMPT, nfe=4, invert_mask=True).images
    assert torch.equal(a, b)
    w = feather(right_half, 1.0)
    assert (w[~right_half] == 0).all() and w[:, 7].min() > 0.99 and 0.4 < w[0, 4] < 0.9


def one_line(excinfo, *words):
    text = str(excinfo.value)
    assert "\n" not in text, text
    for word in words:
        assert word in text, (word, text)


def test_errors_name_the_problem_and_the_fix(model, image, right_half):
    with pytest.raises(ValueError) as e:
        inpaint(model, image, torch.ones(7, 8), PROMPT)
    one_line(e, "(7, 8)", "8×8", "give a mask")
    with pytest.raises(ValueError) as e:
        inpaint(model, image, torch.zeros(8, 8), PROMPT)
    one_line(e, "empty", "nothing to regenerate", "invert")
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError) as e:
            img2img(model, image, PROMPT, strength=bad)
        one_line(e, "strength", "[0.0, 1.0]")
    with pytest.raises(ValueError) as e:
        img2img(model, torch.zeros(3, 8, 8), PROMPT, strength=0.5)
    one_line(e, "(3, 8, 8)", "1 channel")
    with pytest.raises(ValueError) as e:
        inpaint(model, torch.zeros(1, 16, 16), right_half, PROMPT)
    one_line(e, "(1, 16, 16)", "8×8")
    with pytest.raises(ValueError) as e:
        outpaint(model, image[:, :, :4], (0, 0, 2, 0), PROMPT)
    one_line(e, "6×8", "choose pad")
    with pytest.raises(ValueError) as e:
        inpaint(model, image, right_half, PROMPT, nfe=3, sampler="euler", repaint_jumps=1)
    one_line(e, "nfe", "too small", "jump_length")
    with pytest.raises(ValueError) as e:
        box_mask((8, 8), (2, 2, 9, 4))
    one_line(e, "does not fit", "x1 ≤ 8")
    with pytest.raises(ValueError) as e:
        inpaint(model, image, right_half, PROMPT, blur=-1)
    one_line(e, "blur")


def test_uint8_round_trip_is_exact():
    """A PNG read as u/127.5 − 1 is written back as the same bytes (the CLI's guarantee rests on it)."""
    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(u.float() / 127.5 - 1), u)


# ---- the command, end to end on PNG files ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from rill.model import save_model

    return str(save_model(tiny_digits_model(), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"))


def png(path, array):
    from PIL import Image

    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return str(path)


def read(path):
    from PIL import Image

    return np.asarray(Image.open(path))


def test_cli_inpaint_keeps_the_bytes(ckpt, tmp_path, capsys):
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (8, 8))
    mask = np.zeros((8, 8))
    mask[2:6, 3:7] = 255
    args = ["edit", "inpaint", png(tmp_path / "in.png", src), PROMPT, "--mask", png(tmp_path / "m.png", mask),
            "--model", ckpt, "-n", "2", "--nfe", "4", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "16 of 64 pixels regenerated" in out and "4 denoiser calls" in out
    files = sorted((tmp_path / "out").glob("*-inpaint-seed*.png"))
    assert len(files) == 2
    for f in files:
        got = read(f)
        assert (got[mask == 0] == src[mask == 0]).all()
        assert (got[mask > 0] != src[mask > 0]).any()
    assert main(["edit", "inpaint", str(tmp_path / "in.png"), PROMPT, "--box", "3,2,7,6", "--model", ckpt,
                 "-n", "2", "--nfe", "4", "--out", str(tmp_path / "box")]) == 0  # fmt: skip
    for a, b in zip(files, sorted((tmp_path / "box").glob("*-inpaint-seed*.png"))):
        assert (read(a) == read(b)).all()  # the box is the same mask


def test_cli_img2img_and_outpaint(ckpt, tmp_path, capsys):
    src = np.random.default_rng(1).integers(0, 256, (8, 8))
    big = np.kron(src, np.ones((16, 16)))  # a ×16 nearest-neighbour copy, as `rill generate` writes
    path = png(tmp_path / "big.png", big)
    assert main(["edit", "img2img", path, PROMPT, "--strength", "0.5", "--model", ckpt, "-n", "1",
                 "--nfe", "5", "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "σ_start = 0.4 " in out and "5 denoiser calls" in out and "×16 upscaled" in out
    assert main(["edit", "img2img", path, PROMPT, "--strength", "0", "--model", ckpt, "-n", "1",
                 "--out", str(tmp_path / "z")]) == 0  # fmt: skip
    assert (read(next((tmp_path / "z").glob("*-seed0.png"))) == src).all()
    left = png(tmp_path / "left.png", src[:, :6])
    assert main(["edit", "outpaint", left, PROMPT, "--pad", "0,0,2,0", "--model", ckpt, "-n", "1",
                 "--nfe", "4", "--out", str(tmp_path / "p")]) == 0  # fmt: skip
    assert (read(next((tmp_path / "p").glob("*-outpaint-seed0.png")))[:, :6] == src[:, :6]).all()


def test_cli_errors_are_one_line(ckpt, tmp_path, capsys):
    src = png(tmp_path / "in.png", np.zeros((8, 8)))
    rgb = png(tmp_path / "rgb.png", np.zeros((8, 8, 3)))
    cases = {
        "exactly one of --mask": [
            "--box",
            "0,0,4,4",
            "--mask",
            png(tmp_path / "m.png", np.ones((8, 8)) * 255),
        ],
        "is 7×8": ["--mask", png(tmp_path / "m7.png", np.ones((8, 7)) * 255)],
        "empty": ["--mask", png(tmp_path / "m0.png", np.zeros((8, 8)))],
        "does not fit": ["--box", "0,0,9,4"],
    }
    for words, extra in cases.items():
        assert main(["edit", "inpaint", src, PROMPT, "--model", ckpt, *extra]) == 2, words
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert main(["edit", "img2img", src, PROMPT, "--strength", "2", "--model", ckpt]) == 2
    assert "strength=2.0 must be in [0.0, 1.0]" in capsys.readouterr().err
    odd = png(tmp_path / "odd.png", np.zeros((10, 9)))
    assert main(["edit", "img2img", odd, PROMPT, "--strength", ".5", "--model", ckpt]) == 2
    assert "is 9×10 but the model draws 8×8; resize it" in capsys.readouterr().err
    assert main(["edit", "img2img", rgb, PROMPT, "--strength", "0", "--model", ckpt, "-n", "1",
                 "--out", str(tmp_path / "c")]) == 0  # fmt: skip
    assert "converted from RGB to L" in capsys.readouterr().out


def test_cli_help_states_the_mask_convention(capsys):
    with pytest.raises(SystemExit):
        main(["edit", "inpaint", "--help"])
    assert "WHITE = REGENERATE" in capsys.readouterr().out
    from rill.app.cli import build_parser
    from rill.inference.edit import DEFAULT_JUMP_LENGTH

    args = build_parser().parse_args(["edit", "inpaint", "x.png", "p", "--box", "0,0,1,1"])
    assert args.jump_length == DEFAULT_JUMP_LENGTH and args.repaint_jumps == 0 and args.blur == 0


def test_save_png_of_an_edit_keeps_the_pixels(model, image, right_half, tmp_path):
    u = to_uint8(image)
    img = u.float() / 127.5 - 1
    r = inpaint(model, img, right_half, PROMPT, nfe=4)
    got = read(save_png(r.images[0], tmp_path / "x.png"))
    assert (got[~right_half.numpy()] == u[0].numpy()[~right_half.numpy()]).all()
