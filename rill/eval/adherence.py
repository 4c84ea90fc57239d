"""Prompt adherence: does an image show what its prompt asked for?

- digits: a classifier fitted ONLY on the held-out real digits (split "heldout", never on generated images,
  nor on the digits the generator was trained on) reads the digit; adherence = how often it reads the prompt's
  digit.
  The classifier is an RBF support-vector machine on the 64 pixels (scikit-learn; fitted in ~0.1 s, so nothing
  is cached); its accuracy on the real "train" digits is reported next to it as the ceiling.
- shapes: the exact programmatic checker in shapes_check.py, overall and for held-out compositions.
- any data: CLIP score (Hessel et al. 2021) when a CLIP model is present in a local folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .shapes_check import check_images, is_heldout_prompt

__all__ = [
    "DigitJudge",
    "digit_of_prompt",
    "digit_adherence",
    "shapes_adherence",
    "ClipScorer",
    "is_heldout_prompt",
]

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT = re.compile(r"(?<![\w.])(\d|" + "|".join(_WORDS) + r")(?![\w.])")


def digit_of_prompt(prompt: str) -> int | None:
    """The digit a prompt asks for ("a handwritten digit 7", "the number seven"), or None if it names none or
    several different ones."""
    found = {m if m.isdigit() else str(_WORDS.index(m)) for m in _DIGIT.findall(prompt.lower())}
    return int(found.pop()) if len(found) == 1 else None


class DigitJudge:
    """RBF-SVM digit classifier fitted on the held-out real digits only (see the module docstring)."""

    def __init__(self, split: str = "heldout", C: float = 5.0):
        try:
            from sklearn.svm import SVC
        except ImportError as e:
            raise ImportError("digit adherence needs scikit-learn: pip install scikit-learn") from e
        from rill.data import load_dataset

        ds = load_dataset("digits", split=split)
        self.split, self.n_fit = split, len(ds)
        self.svm = SVC(C=C, gamma="scale").fit(ds.images.reshape(len(ds), -1).numpy(), np.asarray(ds.labels))

    def predict(self, images: Tensor) -> np.ndarray:
        """(N, 1, 8, 8) images in [-1, 1] -> (N,) predicted digits."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8):
            raise ValueError(f"the digit judge reads (N, 1, 8, 8) images, got shape {tuple(images.shape)}")
        return self.svm.predict(images.detach().float().cpu().clamp(-1, 1).reshape(len(images), -1).numpy())

    def accuracy_on_real(self, split: str = "train") -> float:
        """Accuracy on real digits it was not fitted on: the ceiling a perfect generator would reach."""
        from rill.data import load_dataset

        if split == self.split:
            raise ValueError(
                f"accuracy on the split the judge was fitted on ({split!r}) says nothing; use another"
            )
        ds = load_dataset("digits", split=split)
        return float((self.predict(ds.images.float()) == np.asarray(ds.labels)).mean())


def digit_adherence(
    images: Tensor, prompts: Sequence[str], judge: DigitJudge | None = None
) -> dict[str, Any]:
    """Fraction of images whose digit (read by the judge) is the one their prompt names. Prompts naming no
    single digit are skipped (counted in "skipped")."""
    if len(prompts) != len(images):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
    judge = judge or DigitJudge()
    wanted = [digit_of_prompt(p) for p in prompts]
    keep = [i for i, w in enumerate(wanted) if w is not None]
    if not keep:
        return {"accuracy": None, "skipped": len(prompts), "per_digit": {}}
    pred = judge.predict(images[keep])
    target = np.asarray([wanted[i] for i in keep])
    per_digit = {int(d): float((pred[target == d] == d).mean()) for d in np.unique(target)}
    return {
        "accuracy": float((pred == target).mean()),
        "skipped": len(prompts) - len(keep),
        "per_digit": per_digit,
    }


def shapes_adherence(images: Tensor, prompts: Sequence[str]) -> dict[str, Any]:
    """The programmatic checker over a batch: {"all", "heldout", "seen"} summaries (see shapes_check)."""
    out = check_images(images, prompts)
    out.pop("per_image")
    return out


class ClipScorer:
    """CLIP score 100·max(cos(E_img, E_txt), 0), averaged (Hessel et al. 2021, Eq. 1 with w = 100, the
    torchmetrics convention), with a CLIPModel + tokenizer from a LOCAL folder (never downloaded)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        from .features import _CLIP_MEAN, _CLIP_STD, local_hf_folder

        transformers, path = local_hf_folder(path, "CLIP scores", "a CLIP model and its tokenizer")
        from rill.conditioning.text import quiet_transformers  # mutes load reports and progress bars

        with quiet_transformers():
            self.model = transformers.CLIPModel.from_pretrained(path, local_files_only=True)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model.eval().requires_grad_(False).to(device)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.mean = torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(_CLIP_STD).view(1, 3, 1, 1)
        self.device = torch.device(device)

    @torch.no_grad()
    def scores(self, images: Tensor, prompts: Sequence[str]) -> Tensor:
        """Per-image CLIP scores (N,) for (N, C, H, W) images in [-1, 1] and one prompt per image."""
        if len(prompts) != len(images):
            raise ValueError(
                f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image"
            )
        x = ((images.float() + 1) / 2).clamp(0, 1)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(self.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
        x = ((x.clamp(0, 1) - self.mean) / self.std).to(self.device)
        max_len = int(self.model.config.text_config.max_position_embeddings)
        tok = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        )
        img = self.model.get_image_features(pixel_values=x)
        txt = self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()})
        img, txt = (
            getattr(t, "pooler_output", t) for t in (img, txt)
        )  # transformers 5 may return an output object
        cos = F.cosine_similarity(img.float(), txt.float(), dim=-1)
        return 100 * cos.clamp(min=0).cpu()

    def __call__(self, images: Tensor, prompts: Sequence[str]) -> float:
        return float(self.scores(images, prompts).mean())
