"""Pretrained-feature loading code (CLIP, DINOv2) and the CLIP score, on tiny random models saved to tmp_path.

Nothing is downloaded: the models are built from configs here, saved with save_pretrained and loaded back from
the folder with local_files_only, exactly as a user's local CLIP / DINOv2 would be.
"""

from __future__ import annotations

import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

from rill.eval import ClipScorer, HFImageFeatures, frechet_distance  # noqa: E402


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tok = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
    text = dict(
        tower,
        vocab_size=len(vocab),
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(tower, image_size=32, patch_size=8)
    torch.manual_seed(0)
    transformers.CLIPModel(
        transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    ).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_clip_vision_features_and_score(clip_dir):
    feats = HFImageFeatures(clip_dir)
    assert feats.model_type == "clip" and feats.image_size == 32
    x = torch.rand(6, 1, 8, 8) * 2 - 1  # grey 8x8 images are repeated to RGB and resized
    f = feats.features(x)
    assert f.shape == (6, 32) and torch.isfinite(f).all()
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    scorer = ClipScorer(clip_dir)
    s = scorer.scores(torch.rand(2, 3, 16, 16) * 2 - 1, ["a red circle", "a blue square"])
    assert s.shape == (2,) and (s >= 0).all() and (s <= 100).all()


def test_dinov2_features(tmp_path):
    size = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    cfg = transformers.Dinov2Config(**size, image_size=32, patch_size=8)
    transformers.Dinov2Model(cfg).save_pretrained(tmp_path)
    feats = HFImageFeatures(tmp_path)
    assert feats.model_type == "dinov2"
    assert feats.features(torch.rand(3, 3, 32, 32) * 2 - 1).shape == (3, 32)


def test_missing_folder_says_no_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        HFImageFeatures(tmp_path / "nothing")
