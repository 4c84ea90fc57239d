"""Datasets: digits, shapes (captions, held-out split, parse_caption), folder (bad files), points, signals."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from rill.conditioning.labels import NUMBER_WORDS
from rill.data import DATASET_SPECS, load_dataset
from rill.data.digits import CAPTION_TEMPLATES, DigitsDataset
from rill.data.points import GAUSSIANS8_CENTRES, GAUSSIANS8_NAMES, POINT_SETS
from rill.data.shapes import (
    COLOURS,
    HELDOUT_COMBOS,
    POSITIONS,
    SHAPES,
    ShapesDataset,
    parse_caption,
    render_scene,
    scene_caption,
    semantic_scene,
)
from rill.data.signals import WAVE_CAPTIONS, SignalsDataset


def test_import_is_light():
    code = "import sys, rill.data; bad = {'transformers', 'sklearn'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- digits


def test_digits_all():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", split="all")
    assert len(ds) == 1797 and ds.image_shape == (1, 8, 8)
    x, caption = ds[5]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    ref = load_digits()
    assert torch.allclose(x[0], torch.from_numpy(ref.images[5] / 8.0 - 1.0).float())
    assert ds.labels.tolist() == ref.target.tolist()
    for c, label in zip(ds.captions, ds.labels):
        assert str(label) in c.split() or NUMBER_WORDS[label] in c.replace(",", "").split()
    used = {t for t in CAPTION_TEMPLATES for c in ds.captions[:200] if c in {t.format(n=d, w=w) for d, w in
            enumerate(NUMBER_WORDS)}}  # fmt: skip
    assert len(used) >= 6
    assert DigitsDataset(split="all").captions == ds.captions  # deterministic
    assert DigitsDataset(split="all", seed=1).captions != ds.captions


def test_digits_split():
    train, held, full = (DigitsDataset(split=s) for s in ("train", "heldout", "all"))
    assert not set(train.indices) & set(held.indices)
    assert sorted([*train.indices, *held.indices]) == list(range(1797))
    assert 0.18 < len(held) / 1797 < 0.22
    for c in range(10):  # stratified
        frac = (held.labels == c).sum() / (full.labels == c).sum()
        assert abs(frac - 0.2) < 0.01
    i = int(held.indices[0])
    assert held.captions[0] == full.captions[i] and torch.equal(held[0][0], full[i][0])
    with pytest.raises(ValueError, match="split='test'.*train"):
        DigitsDataset(split="test")


# ---------------------------------------------------------------- shapes


def test_shapes_items_and_determinism():
    ds = load_dataset("shapes", n=64)
    assert ds._captions is None  # lazy: nothing generated up front
    x, caption = ds[3]
    assert x.shape == (3, 32, 32) and ds.image_shape == (3, 32, 32) and x.dtype == torch.float32
    assert -1 <= x.min() and x.max() <= 1 and caption == ds.captions[3]
    assert torch.equal(ShapesDataset(n=64)[3][0], x) and ShapesDataset(n=64).captions == ds.captions
    assert ShapesDataset(n=64, seed=1).captions != ds.captions
    assert ShapesDataset(n=10, image_size=64)[0][0].shape == (3, 64, 64)
    kinds = [len(ds.scene(i)) for i in range(64)]
    assert 16 < kinds.count(2) < 48
    assert torch.equal(ds[-1][0], ds[63][0])
    with pytest.raises(IndexError):
        ds[64]
    with pytest.raises(ValueError, match="split='test'"):
        ShapesDataset(split="test")


def _pairs(scene):
    return {(o["colour"], o["shape"]) for o in scene}


def test_shapes_heldout_never_leaks():
    held = set(HELDOUT_COMBOS)
    assert len(held) == 4 and all(c in COLOURS and s in SHAPES for c, s in held)
    train, test = ShapesDataset(n=3000, split="train"), ShapesDataset(n=300, split="heldout")
    seen = set()
    for i in range(len(train)):
        pairs = _pairs(train.scene(i))
        assert not pairs & held, (i, train.caption(i))
        seen |= pairs
    assert len(seen) == 21 - 4  # every other pair does appear
    for i in range(len(test)):
        assert _pairs(test.scene(i)) & held
        if len(test.scene(i)) == 1:
            assert _pairs(test.scene(i)) <= held
    assert any(_pairs(ShapesDataset(n=400, split="all").scene(i)) & held for i in range(400))


def test_parse_caption_inverts_captions():
    for split in ("train", "heldout"):
        ds = ShapesDataset(n=300, split=split)
        for i in range(len(ds)):
            scene = ds.scene(i)
            assert parse_caption(ds.captions[i]) == semantic_scene(scene)
            assert scene_caption(parse_caption(ds.captions[i])) == ds.captions[i]
    assert parse_caption("A small red circle in the centre.")[0]["position"] == "center"
    assert parse_caption("a large blue square to the left of a small yellow triangle") == [
        {
            "shape": "square",
            "colour": "blue",
            "size": "large",
            "position": None,
            "relation": "to the left of",
        },
        {"shape": "triangle", "colour": "yellow", "size": "small", "position": None, "relation": None},
    ]
    with pytest.raises(ValueError, match="does not follow.*COLOUR in"):
        parse_caption("a pink circle in the top left")


def test_shapes_geometry_matches_captions():
    ds = ShapesDataset(n=400, split="all")
    for i in range(len(ds)):
        scene = ds.scene(i)
        for o in scene:
            (x, y), e = o["center"], o["extent"]
            assert e <= x <= 1 - e and e <= y <= 1 - e
        if len(scene) == 1:
            assert scene[0]["position"] == parse_caption(ds.captions[i])[0]["position"]
        else:
            (a, b), rel = scene, scene[0]["relation"]
            axis = 0 if rel == "to the left of" else 1
            assert b["center"][axis] - a["center"][axis] > a["extent"] + b["extent"]  # ordered, no overlap


@pytest.mark.parametrize("position", ["top left", "center", "bottom right"])
def test_render_scene_colour_and_place(position):
    scene = parse_caption(f"a large orange square in the {position}")
    img = render_scene(scene, 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    cx, cy = POSITIONS[position]
    centre = img[int(cy * 32), int(cx * 32)].astype(int)
    assert np.abs(centre - COLOURS["orange"]).max() <= 2
    ys, xs = np.nonzero(np.abs(img.astype(int) - COLOURS["orange"]).max(-1) <= 2)
    assert abs(xs.mean() / 32 - cx) < 0.05 and abs(ys.mean() / 32 - cy) < 0.05
    edge = img[np.abs(img.astype(int) - img[0, 0]).max(-1) > 0]  # anti-aliased: partial-coverage pixels exist
    assert len({tuple(p) for p in edge}) > 2


# ---------------------------------------------------------------- folder


def _png(path, size=(20, 12), colour=(200, 30, 30), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def _bomb_png(path, side=40000):
    """A tiny PNG whose header claims side x side pixels (valid CRC): PIL must refuse it at open."""
    data = bytearray(_png(path, (4, 4)).read_bytes())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


@pytest.fixture
def image_folder(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "sub" / "b.png", size=(12, 30), colour=(0, 0, 255, 0), mode="RGBA")
    Image.new("RGB", (16, 16), (10, 200, 10)).save(tmp_path / "c.jpg")
    (tmp_path / "c.txt").write_text("a green square\n")
    meta = [{"file_name": "a.png", "text": "a red thing"}, {"file_name": "sub/b.png", "text": "clear"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    return tmp_path


def test_folder_dataset(image_folder):
    ds = load_dataset(f"folder:{image_folder}", image_size=8)
    assert len(ds) == 3 and ds.skipped == 0 and ds.image_shape == (3, 8, 8)
    assert ds.captions == ["a red thing", "a green square", "clear"]
    x, caption = ds[0]
    assert x.shape == (3, 8, 8) and caption == "a red thing"
    assert torch.allclose(x[:, 4, 4], torch.tensor([200, 30, 30]) / 127.5 - 1, atol=0.02)
    assert torch.allclose(ds[2][0], torch.ones(3, 8, 8))  # transparent -> white
    flipped = load_dataset(f"folder:{image_folder}", image_size=8, flip=True, generator=torch.Generator())
    assert torch.allclose(flipped[0][0], x) or torch.allclose(flipped[0][0], x.flip(-1))


def test_folder_dataset_grey(tmp_path):
    """channels=1: a grey file keeps its values exactly; RGB becomes its ITU-R 601 luma; larger images are
    resized so the shorter side is image_size, then centre-cropped."""
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    _png(tmp_path / "red.png", size=(32, 16), colour=(200, 30, 30))
    meta = [{"file_name": "g.png", "text": "a ramp"}, {"file_name": "red.png", "text": "red"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    ds = load_dataset(f"folder:{tmp_path}", image_size=8, channels=1)
    assert ds.image_shape == (1, 8, 8) and ds.channels == 1 and "channels=1" in repr(ds)
    x, caption = ds[0]
    assert caption == "a ramp" and x.shape == (1, 8, 8)
    assert torch.equal(x[0], torch.from_numpy(grey).float() / 127.5 - 1)
    luma = round((200 * 299 + 30 * 587 + 30 * 114) / 1000)  # 81
    assert ds[1][0].shape == (1, 8, 8)
    assert torch.allclose(ds[1][0], torch.full((1, 8, 8), luma / 127.5 - 1), atol=1 / 127.5)
    assert load_dataset(f"folder:{tmp_path}", image_size=8)[0][0].shape == (3, 8, 8)  # RGB stays the default
    with pytest.raises(ValueError, match=r"channels must be 1 \(grey\) or 3 \(RGB\), got 2"):
        load_dataset(f"folder:{tmp_path}", image_size=8, channels=2)


def test_folder_skips_bad_images(image_folder):
    (image_folder / "junk.png").write_bytes(b"not an image at all" * 10)
    (image_folder / "junk.txt").write_text("junk")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(image_folder / "trunc.png")
    full = (image_folder / "trunc.png").read_bytes()
    (image_folder / "trunc.png").write_bytes(full[: len(full) // 2])  # truncated mid-data
    Image.fromarray(noise).save(image_folder / "trunc.jpg")
    full = (image_folder / "trunc.jpg").read_bytes()
    (image_folder / "trunc.jpg").write_bytes(full[: len(full) // 2])
    (image_folder / "trunc.txt").write_text("half an image")
    _bomb_png(image_folder / "bomb.png")
    (image_folder / "bomb.txt").write_text("a bomb")
    with open(image_folder / "metadata.jsonl", "a") as f:
        f.write(json.dumps({"file_name": "gone.png", "text": "missing"}) + "\n")
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.warns(UserWarning) as record:
        ds = load_dataset(f"folder:{image_folder}", image_size=8)
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's global limit restored
    messages = " ".join(str(w.message) for w in record)
    for name in ("junk.png", "trunc.png", "trunc.jpg", "bomb.png", "gone.png"):
        assert name in messages
    assert "decompression bomb" in messages
    assert ds.skipped == 5 and len(ds) == 3


def test_folder_pixel_limit_warning_and_error(tmp_path):
    _png(tmp_path / "big.png", size=(40, 40))  # 1600 px: PIL's warning zone for a 1000 px limit
    _png(tmp_path / "huge.png", size=(64, 64))  # 4096 px > 2x limit: PIL's error
    _png(tmp_path / "ok.png", size=(20, 20))
    for name in ("big", "huge", "ok"):
        (tmp_path / f"{name}.txt").write_text(name)
    with pytest.warns(UserWarning, match="bomb"):
        ds = load_dataset(f"folder:{tmp_path}", image_size=8, max_pixels=1000)
    assert ds.captions == ["ok"] and ds.skipped == 2


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path.name}.*empty.*metadata.jsonl"):
        load_dataset(f"folder:{tmp_path}")
    _png(tmp_path / "lonely.png")
    with pytest.raises(ValueError, match="lonely.png.*no caption"):
        load_dataset(f"folder:{tmp_path}")
    (tmp_path / "lonely.png").write_bytes(b"garbage")
    (tmp_path / "lonely.txt").write_text("x")
    with pytest.warns(UserWarning, match="lonely.png"), pytest.raises(ValueError, match="all 1 images"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_dataset(f"folder:{tmp_path / 'nope'}")


# ---------------------------------------------------------------- points, signals, registry


@pytest.mark.parametrize("name", list(POINT_SETS))
def test_points(name):
    ds = load_dataset(f"points:{name}", n=2000)
    assert ds.points.shape == (2000, 2) and ds.points.dtype == torch.float32 and ds.image_shape == (2,)
    x, caption = ds[0]
    assert x.shape == (2,) and len(ds.captions) == 2000
    assert ds.points.abs().max() < 4 and 0.5 < ds.points.std() < 2
    assert torch.equal(load_dataset(f"points:{name}", n=2000).points, ds.points)
    if name == "gaussians8":
        assert set(ds.captions) == set(GAUSSIANS8_NAMES)
        centres = torch.tensor(GAUSSIANS8_CENTRES, dtype=torch.float32)[[GAUSSIANS8_NAMES.index(c) for c in
                                                                           ds.captions]]  # fmt: skip
        assert (ds.points - centres).norm(dim=1).max() < 1.0
    else:
        assert set(ds.captions) == {name}


def test_signals():
    ds = load_dataset("signals", n=200)
    x, caption = ds[0]
    assert x.shape == (1, 64) and ds.image_shape == (1, 64) and x.dtype == torch.float32
    assert set(ds.captions) == set(WAVE_CAPTIONS.values()) and caption == ds.captions[0]
    xs = torch.stack([ds[i][0] for i in range(len(ds))])
    assert xs.abs().max() <= 1 and xs.std() > 0.3
    assert torch.equal(SignalsDataset(n=10)[7][0], ds[7][0])  # sample i does not depend on n
    square = [i for i, k in enumerate(ds.kinds) if k == "square"][0]
    assert len(torch.unique(ds[square][0].abs())) == 1
    assert SignalsDataset(n=3, length=128)[0][0].shape == (1, 128)
    with pytest.raises(ValueError, match="subset of"):
        SignalsDataset(kinds=["noise"])


def test_registry_errors():
    assert "points:moons" in DATASET_SPECS and "folder:PATH" in DATASET_SPECS
    for bad in ("mnist", "points", "points:spiral", "folder:", "digits:x"):
        with pytest.raises(ValueError, match="moons"):
            load_dataset(bad)
