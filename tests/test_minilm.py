"""rill.conditioning.minilm's plain-torch MiniLM against transformers: same token ids, same outputs, no heavy
import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may touch the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"
torch.set_num_threads(1)

from rill.conditioning import minilm  # noqa: E402
from rill.conditioning.text import HFTextEncoder, load_text_encoder, minilm_path  # noqa: E402

PROMPTS = [
    "",
    "a handwritten digit 7",
    "Hello, world!!! (really?) -- yes; no: 'single' \"double\" a/b\\c #1 @x 50% & more...",
    "A BLUE Square To The LEFT of a yellow triangle",
    "Ünïcödé café naïve résumé Ångström straße",
    "日本語のテキスト 中文 한국어 🙂👍 ok",
    "[MASK] a [SEP] b [cls] [unk]",
    "  tabs\tand\nnewlines \r\n  \x00 zero\u200bwidth  ",
    "pneumonoultramicroscopicsilicovolcanoconiosis " + "x" * 120,
    "3.14159 and 1,000,000 or 2e-5",
    " ".join(["a long prompt that has to be truncated"] * 12),
]


@pytest.fixture(scope="module")
def fast() -> HFTextEncoder:
    return HFTextEncoder("minilm")


@pytest.fixture(scope="module")
def reference() -> HFTextEncoder:
    """The same folder through the transformers path (a path, not the name "minilm", takes that path)."""
    return HFTextEncoder(minilm_path())


def test_paths_taken(fast, reference):
    assert isinstance(fast.model, minilm.BertEncoder)
    assert isinstance(fast.tokenizer, minilm.WordPieceTokenizer)
    assert type(reference.model).__name__ == "BertModel"


@pytest.mark.parametrize("max_length", [32, 8])
def test_token_ids_equal_auto_tokenizer(fast, reference, max_length):
    kw = dict(padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    ours, theirs = fast.tokenizer(PROMPTS, **kw), reference.tokenizer(PROMPTS, **kw)
    assert set(ours) == set(theirs) == {"input_ids", "token_type_ids", "attention_mask"}
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert ours["attention_mask"][-1].all()  # the long prompt really was truncated
    assert (ours["input_ids"][:, -1] == 0).any()  # and the short ones really were padded
    for prompt in PROMPTS:  # unpadded, untruncated single strings (as tests/test_text.py calls it)
        assert fast.tokenizer(prompt) == {k: list(v) for k, v in reference.tokenizer(prompt).items()}, prompt


def test_tokenizer_padding_modes(fast, reference):
    for padding in (True, "longest", False):
        ours = fast.tokenizer(PROMPTS[:4], padding=padding)
        theirs = reference.tokenizer(PROMPTS[:4], padding=padding)
        assert ours["input_ids"] == theirs["input_ids"], padding
    with pytest.raises(ValueError, match="padding='max'"):
        fast.tokenizer(PROMPTS, padding="max")
    with pytest.raises(ValueError, match="needs equal lengths"):
        fast.tokenizer(PROMPTS[:3], return_tensors="pt")


def test_outputs_equal_transformers(fast, reference):
    ours, theirs = fast.encode(PROMPTS), reference.encode(PROMPTS)
    assert set(ours) == set(theirs) == {"tokens", "mask", "pooled"}
    assert torch.equal(ours["mask"], theirs["mask"])
    for key in ("tokens", "pooled"):
        assert ours[key].shape == theirs[key].shape and ours[key].dtype == theirs[key].dtype == torch.float32
        assert (ours[key] - theirs[key]).abs().max() < 1e-5, key
    assert ours["tokens"][~ours["mask"]].abs().max() == 0  # padding zeroed, as text.py does
    assert torch.allclose(ours["pooled"].norm(dim=-1), torch.ones(len(PROMPTS)), atol=1e-5)
    batch = fast.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():  # the pooler too (pooling="pooler"): tanh(W h_CLS + b)
        a, b = fast.model(**batch).pooler_output, reference.model(**batch).pooler_output
    assert (a - b).abs().max() < 1e-5


def test_same_interface_and_spec(fast, reference):
    assert fast.dim == reference.dim == 384 and fast.max_length == reference.max_length == 32
    assert fast.spec == {"kind": "hf", "name_or_path": "minilm", "max_length": 32, "pooling": "mean",
                         "normalize": True}  # fmt: skip
    assert fast.pooling == reference.pooling and fast.normalize == reference.normalize
    assert not fast.model.training and not any(p.requires_grad for p in fast.model.parameters())
    assert fast.device == torch.device("cpu") and fast.to("cpu") is fast
    again = load_text_encoder(fast.spec)
    assert isinstance(again.model, minilm.BertEncoder)
    assert torch.equal(again.encode(PROMPTS[:3])["tokens"], fast.encode(PROMPTS[:3])["tokens"])


def test_max_length_beyond_positions():
    with pytest.raises(ValueError, match="exceeds the 512 positions"):
        HFTextEncoder("minilm", max_length=513)


def test_fallback_to_transformers(monkeypatch):
    monkeypatch.setattr(minilm, "fast_path_available", lambda: False)
    enc = HFTextEncoder("minilm", max_length=8)
    assert type(enc.model).__name__ == "BertModel" and enc.spec["name_or_path"] == "minilm"


def test_fast_path_available_reflects_missing_package(monkeypatch):
    real = minilm.importlib.util.find_spec
    monkeypatch.setattr(minilm.importlib.util, "find_spec", lambda n: None if n == "tokenizers" else real(n))
    assert not minilm.fast_path_available()


def test_config_rejects_unsupported(tmp_path):
    cfg = json.loads((minilm.Path(minilm_path()) / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        minilm.BertConfig.from_json(tmp_path / "config.json")


def test_no_transformers_import():
    code = (
        "import sys, rill.conditioning.text as text\n"
        "bad = {'transformers', 'tokenizers', 'safetensors'} & set(sys.modules); assert not bad, bad\n"
        "enc = text.load_text_encoder('minilm'); enc.encode(['a handwritten digit 7', ''])\n"
        "assert type(enc.model).__name__ == 'BertEncoder', type(enc.model)\n"
        "assert 'transformers' not in sys.modules, [m for m in sys.modules if 'transformers' in m][:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
