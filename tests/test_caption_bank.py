"""CaptionBank's disk cache: a big bank is encoded once, then read back bit for bit by the next run."""

from __future__ import annotations

import torch

from rill.train.batches import CaptionBank


class Encoder:
    def __init__(self, spec):
        self.spec, self.calls = spec, 0

    def encode(self, prompts):
        self.calls += 1
        g = torch.Generator().manual_seed(len(prompts))
        tokens = torch.randn(len(prompts), 6, 4, generator=g)
        mask = torch.zeros(len(prompts), 6, dtype=torch.bool)
        mask[:, :3] = True
        return {"tokens": tokens, "mask": mask, "pooled": tokens.mean(1)}


class Model:
    def __init__(self, encoder):
        self.encoder = encoder

    def load_text_encoder(self):
        return self.encoder


def test_big_banks_are_cached_on_disk_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("RILL_CACHE", str(tmp_path))
    monkeypatch.setattr(CaptionBank, "DISK_CACHE_MIN", 3)
    captions = [f"caption {i}" for i in range(10)]
    first_enc = Encoder({"kind": "hf", "name_or_path": "x", "max_length": 6})
    first = CaptionBank(Model(first_enc), captions, chunk=4)
    assert first_enc.calls == 3 and len(list((tmp_path / "captions").glob("*.safetensors"))) == 1
    again_enc = Encoder(dict(first_enc.spec))
    again = CaptionBank(Model(again_enc), list(reversed(captions)), chunk=4)
    assert again_enc.calls == 0  # read back, not encoded
    assert first.cond.keys() == again.cond.keys()
    assert all(torch.equal(first.cond[k], again.cond[k]) for k in first.cond)
    assert first.cond["tokens"].shape[1] == 3  # the all-padding columns are dropped either way
    other = Encoder({"kind": "hf", "name_or_path": "y", "max_length": 6})  # another encoder: its own bank
    CaptionBank(Model(other), captions, chunk=4)
    assert other.calls == 3 and len(list((tmp_path / "captions").glob("*.safetensors"))) == 2


def test_small_banks_and_spec_less_encoders_stay_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("RILL_CACHE", str(tmp_path))
    CaptionBank(Model(Encoder({"kind": "hf"})), ["a", "b"])  # below DISK_CACHE_MIN
    monkeypatch.setattr(CaptionBank, "DISK_CACHE_MIN", 1)
    CaptionBank(Model(Encoder(None)), ["a", "b"])  # no spec: nothing to key a file by
    assert not (tmp_path / "captions").exists()
