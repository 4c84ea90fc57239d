"""The emoji dataset (rill.data.emoji): recognisable renders on white, captions, the held-out attribute ×
subject pairs, the on-disk cache, the font lookup and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import rill.data.emoji as emoji_data
from rill.data import load_dataset
from rill.data.emoji import SKIN_TONES, TEMPLATES, EmojiDataset, caption_name, parse_name

FONT = Path(emoji_data.FONT_PATHS[0])
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="apt-get install fonts-noto-color-emoji")


@pytest.fixture(scope="module")
def every():
    return EmojiDataset("all")


def by_name(ds: EmojiDataset, name: str) -> torch.Tensor:
    i = next(i for i, e in enumerate(ds.entries) if e["name"] == name)
    return ds.images[ds.entry_of.index(i)].float()


def test_shipped_set_is_recognisable_pictures_on_white(every):
    assert every.source == "assets" and every.image_shape == (3, 32, 32)
    unique = every.images[:: len(TEMPLATES)].float()  # one item per emoji
    assert len(unique) == len(every.entries) > 3000
    corners = unique[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners > 0.98).float().mean() > 0.97  # a white background
    drawn = (unique < 0.9).any(1).float().mean((1, 2))  # fraction of non-white pixels
    assert (drawn > 0.1).float().mean() > 0.95
    saturation = unique.amax(1) - unique.amin(1)
    assert (saturation.mean((1, 2)) > 0.05).float().mean() > 0.8  # colour, not grey blobs
    r, g, b = by_name(every, "red heart").mean((1, 2))
    assert r > g + 0.3 and r > b + 0.3
    r, g, b = by_name(every, "blue circle").mean((1, 2))
    assert b > r + 0.3
    light, dark = (by_name(every, f"waving hand {t} skin tone").mean() for t in ("light", "dark"))
    assert light > dark + 0.1  # the skin tone is in the pixels


def test_names_parse_into_explicit_attributes():
    assert parse_name("man office worker medium-dark skin tone") == dict(
        subject="office worker", gender="man", skin_tone="medium-dark", hair=None, colour=None
    )
    assert parse_name("man medium-dark skin tone bald")["hair"] == "bald"
    assert parse_name("light blue heart") == dict(subject="heart", colour="light blue", skin_tone=None,
                                                  gender=None, hair=None)  # fmt: skip
    assert parse_name("kiss woman man dark skin tone light skin tone")["skin_tone"] == ["dark", "light"]
    assert parse_name("woman and man holding hands")["gender"] is None
    assert caption_name({"name": "man medium-dark skin tone bald", "aliases": []}, 0) == (
        "man bald, medium-dark skin tone"
    )


def test_captions_follow_the_templates_and_cycle_names(every):
    i = next(i for i, e in enumerate(every.entries) if e["name"] == "red heart")
    items = [j for j, e in enumerate(every.entry_of) if e == i]
    caps = [every.captions[j] for j in items]
    names = ["red heart", *every.entries[i]["aliases"]]
    assert caps == [t.format(names[k % len(names)]) for k, t in enumerate(TEMPLATES)]
    assert all(torch.equal(every.images[items[0]], every.images[j]) for j in items)
    toned = [c for c in every.captions if "skin tone" in c]
    assert toned and all(c.rsplit(", ", 1)[-1].endswith("skin tone") for c in toned)


def test_heldout_pairs_are_never_seen_in_training(every):
    train, held = EmojiDataset("train"), EmojiDataset("heldout")
    assert len(train) + len(held) == len(every) and held.heldout == every.heldout
    pairs = every.heldout
    kinds = {a for a, _, _ in pairs}
    assert kinds == {"skin_tone", "gender", "colour"} and len(pairs) >= 40
    assert all(e["heldout"] == emoji_data.is_heldout(e, pairs) for e in every.entries)
    assert not any(train.entries[i]["heldout"] for i in set(train.entry_of))
    assert all(held.entries[i]["heldout"] for i in set(held.entry_of))
    # composition is measurable: a held-out tone's subject is seen with other tones, the tone with others
    seen = [train.entries[i] for i in set(train.entry_of)]
    train_tones = {(e["skin_tone"], emoji_data._person(e)) for e in seen if isinstance(e["skin_tone"], str)}
    for attr, tone, subject in pairs:
        if attr == "skin_tone":
            others = {t for t, s in train_tones if s == subject}
            assert tone not in others and len(others) == len(SKIN_TONES) - 1, (subject, tone, others)
            assert any(t == tone for t, s in train_tones if s != subject)
    assert ("colour", "green", "heart") in pairs
    assert not any("green heart" in c for c in train.captions)
    assert any("green heart" in c for c in held.captions)


def test_load_dataset_and_the_split_check():
    assert len(load_dataset("emoji", split="heldout")) > 0
    with pytest.raises(ValueError, match="emoji split"):
        EmojiDataset("test")
    with pytest.raises(ValueError, match="emoji image_size"):
        EmojiDataset(image_size=48)


def test_missing_font_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(emoji_data, "FONT_PATHS", ())
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-color-emoji"):
        emoji_data.find_font()
    with pytest.raises(FileNotFoundError, match="NotoColorEmoji.ttf"):
        EmojiDataset(font=str(tmp_path / "none.ttf"))


@needs_font
@pytest.mark.parametrize("size", [32, 64])
def test_render_is_cached_atomically_and_reused(monkeypatch, tmp_path, every, size):
    few = emoji_data.emoji_entries()[::400][:8]
    monkeypatch.setattr(emoji_data, "emoji_entries", lambda: few)
    first = EmojiDataset("all", image_size=size, font=str(FONT), cache_dir=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert first.source == "rendered" and len(files) == 2 and not any(f.startswith(".") for f in files)
    stamp = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = EmojiDataset("all", image_size=size, font=str(FONT), cache_dir=str(tmp_path))
    assert again.source == "cache" and stamp == {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert torch.equal(first.images, again.images) and again.images.shape[1:] == (3, size, size)
    if size == 32:  # the same pixels as the shipped set
        for e in first.entries:
            assert torch.equal(by_name(first, e["name"]), by_name(every, e["name"]))


@needs_font
def test_an_unknown_sequence_is_left_out():
    from PIL import ImageFont

    face = ImageFont.truetype(str(FONT), 109)
    assert emoji_data.render_emoji("\U0001f600", face).shape == (32, 32, 3)
    assert emoji_data.render_emoji("\U0001f600\u200d\U0001f680\U0001f600", face) is None  # three glyphs
    assert np.asarray(emoji_data.render_emoji("\U0001f600", face, 64)).shape == (64, 64, 3)


def test_feature_net_arrays_hold_one_image_per_emoji(every):
    from rill.eval.features import dataset_arrays

    images, labels = dataset_arrays("emoji", "all")
    assert images.shape == (len(every.entries), 3, 32, 32) and torch.equal(labels, torch.arange(len(labels)))
    assert torch.equal(images[7], by_name(every, every.entries[7]["name"]))
    held, held_labels = dataset_arrays("emoji", "heldout")
    assert all(every.entries[i]["heldout"] for i in held_labels.tolist()) and len(held) == len(held_labels)


def test_templates_option_keeps_one_caption_per_emoji():
    one = EmojiDataset("train", templates=1)
    assert len(one) == len(set(one.entry_of)) and all(c.startswith("an emoji of ") for c in one.captions)
    with pytest.raises(ValueError, match="emoji templates"):
        EmojiDataset(templates=0)


def test_min_per_subject_repeats_rare_subjects_only():
    from collections import Counter

    plain, balanced = EmojiDataset("train"), EmojiDataset("train", min_per_subject=9)
    before = Counter(plain.entries[i]["subject"] for i in plain.entry_of)
    after = Counter(balanced.entries[i]["subject"] for i in balanced.entry_of)
    assert set(after) == set(before) and min(after.values()) >= 9
    assert all(after[s] == n for s, n in before.items() if n >= 9)  # common subjects are left as they were
    rare = next(s for s, n in before.items() if n == 3)
    assert after[rare] == 9 and len(balanced) > len(plain)
    assert set(zip(balanced.entry_of, balanced.captions)) == set(zip(plain.entry_of, plain.captions))
    with pytest.raises(ValueError, match="min_per_subject"):
        EmojiDataset(min_per_subject=-1)
