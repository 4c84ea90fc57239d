"""Class conditioning through the text interface (prompt -> class id), and the number words it knows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["ClassLabelEncoder", "NUMBER_WORDS", "check_prompts"]

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """A list of prompt strings, or a TypeError naming what was passed instead."""
    if isinstance(prompts, str):
        raise TypeError(f"encode() takes a list of prompts, got the string {prompts!r}; wrap it: [prompt]")
    out = list(prompts)
    for p in out:
        if not isinstance(p, str):
            raise TypeError(f"prompts must be strings, got {type(p).__name__}: {p!r}")
    return out


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


class ClassLabelEncoder:
    """Class conditioning through the text interface: prompt -> class id.

    A prompt maps to a label when it equals the label (case and punctuation ignored), else when exactly one
    label occurs in it as a whole word/phrase; digit labels "0".."9" also match their number words and vice
    versa ("the number seven" -> "7"). "" maps to the null class id `num_classes` (classifier-free guidance).
    encode() returns "labels" (B,) long, "pooled" (B, num_classes + 1) one-hot (the null class has its own
    slot) and, so token-attending nets accept it too, "tokens" = pooled[:, None] (B, 1, D), "mask" (B, 1).
    """

    def __init__(self, labels: Sequence[str]) -> None:
        labels = [str(x) for x in labels]
        if not labels:
            raise ValueError("ClassLabelEncoder needs at least one label")
        keys = [_words(x) for x in labels]
        if "" in keys or len(set(keys)) != len(keys):
            raise ValueError(f"labels must be distinct and non-empty (ignoring case, punctuation): {labels}")
        self.labels = labels
        self.num_classes = len(labels)
        self.null_class = len(labels)
        self.dim = len(labels) + 1
        self.max_length = 1
        self._exact = {k: i for i, k in enumerate(keys)}
        self._aliases: list[tuple[re.Pattern[str], int]] = []
        for i, key in enumerate(keys):
            names = {key}
            if key in NUMBER_WORDS:
                names.add(str(NUMBER_WORDS.index(key)))
            elif key.isdigit() and int(key) < len(NUMBER_WORDS):
                names.add(NUMBER_WORDS[int(key)])
            for name in names:
                self._aliases.append((re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])"), i))

    @property
    def spec(self) -> dict[str, Any]:
        return {"kind": "class", "labels": list(self.labels)}

    def label_id(self, prompt: str) -> int:
        text = _words(prompt)
        if text == "":
            return self.null_class
        if text in self._exact:
            return self._exact[text]
        found = sorted({i for pattern, i in self._aliases if pattern.search(text)})
        if len(found) == 1:
            return found[0]
        which = f"matches several labels {[self.labels[i] for i in found]}" if found else "matches no label"
        raise ValueError(f"prompt {prompt!r} {which}; labels are {self.labels} (or '' for the null class)")

    def encode(self, prompts: list[str]) -> dict[str, Tensor]:
        ids = torch.tensor([self.label_id(p) for p in check_prompts(prompts)], dtype=torch.long)
        pooled = torch.nn.functional.one_hot(ids, self.dim).float()  # (B, num_classes + 1)
        mask = torch.ones(len(ids), 1, dtype=torch.bool)
        return {"labels": ids, "pooled": pooled, "tokens": pooled[:, None, :].clone(), "mask": mask}

    def __repr__(self) -> str:
        return f"ClassLabelEncoder({self.labels!r})"
