"""Real pictures with real names: the Noto Color Emoji font rendered to 32×32 (or 64×64) RGB, with captions.

    ds = load_dataset("emoji", split="train")   # (3, 32, 32) in [-1, 1]; also image_size=64, font=PATH
    ds.entries[ds.entry_of[i]]                  # metadata of item i: char, name, subject, attributes

Pictures: every fully-qualified emoji of the `emoji` package's table (flags left out) that the font draws as
one glyph, rendered by Pillow at 109 px (the font's only bitmap size) on a 136×128 canvas, centred on a white
square and downsampled with LANCZOS. The rendered set is cached on disk after the first render
($RILL_CACHE/data, else ~/.cache/rill/data); the 32×32 set also ships in rill/assets (emoji-32.*) so training
works without the font (licence: rill/assets/EMOJI-LICENSE.txt).
Captions: each picture appears once per template ("an emoji of {name}", "{name}", "a picture of {name}"),
the name cycling through its CLDR short name, the `emoji` package's aliases and its Unicode character name.
Attributes (explicit in `entries`): skin_tone (one of SKIN_TONES, or a list for two-person emoji), gender
(man | woman), hair (HAIRS), colour (COLOURS; hearts, circles, squares). Held out (split="heldout"):
the (attribute, subject) pairs of `heldout_pairs(entries)`: a fifth of the skin-toned subjects each lose one
tone, a tenth of the gendered subjects lose one gender, and three colour × shape pairs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rill.core.checks import check_choice

__all__ = ["EmojiDataset", "SKIN_TONES", "HAIRS", "COLOURS", "TEMPLATES", "SPLITS", "FONT_PATHS", "find_font",
           "emoji_entries", "render_emoji", "heldout_pairs", "load_rendered", "parse_name"]  # fmt: skip

SKIN_TONES = ("light", "medium-light", "medium", "medium-dark", "dark")
GENDERS = ("man", "woman")  # "person" is the neutral form: part of the subject
HAIRS = ("red hair", "curly hair", "white hair", "blond hair", "bald")
COLOURS = ("light blue", "red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white",
           "pink", "grey")  # fmt: skip
COLOUR_SUBJECTS = ("heart", "circle", "square", "large square", "medium square", "small square",
                   "medium-small square")  # fmt: skip
HELDOUT_COLOURS = (("green", "heart"), ("orange", "circle"), ("purple", "square"))
TEMPLATES = ("an emoji of {}", "{}", "a picture of {}")
SPLITS = ("train", "heldout", "all")
SIZES = (32, 64)
FONT_PATHS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf", "/usr/share/fonts/noto/NotoColorEmoji.ttf",
              "/usr/local/share/fonts/NotoColorEmoji.ttf")  # fmt: skip
_FONT_SIZE, _CANVAS = 109, (136, 128)  # the font's one bitmap strike (CBDT) and its glyph box
_ASSETS = Path(__file__).resolve().parent.parent / "assets"
_FORMAT = 1  # bump when the rendering or the entry list changes: cached renders of another format are redone
_TONE_RE = re.compile(rf"\b({'|'.join(sorted(SKIN_TONES, key=len, reverse=True))}) skin tone\b")


def find_font(font: str | os.PathLike | None = None) -> Path:
    """The Noto Color Emoji font: `font` if given, else the first of FONT_PATHS that exists."""
    if font is not None:
        if not Path(font).is_file():
            raise FileNotFoundError(f"emoji font {font!s} not found; give the path of NotoColorEmoji.ttf")
        return Path(font)
    for path in FONT_PATHS:
        if Path(path).is_file():
            return Path(path)
    raise FileNotFoundError(
        "the emoji dataset needs the Noto Color Emoji font: apt-get install fonts-noto-color-emoji (Debian), "
        "or pass font=PATH (--set data_kwargs.font=PATH)"
    )


def parse_name(name: str) -> dict[str, Any]:
    """CLDR short name -> {"subject", "skin_tone", "gender", "hair", "colour"} (None where absent).

    "man office worker medium-dark skin tone" -> subject "office worker", gender "man", skin_tone
    "medium-dark"; "red heart" -> subject "heart", colour "red"; two tones -> a list."""
    tones = _TONE_RE.findall(name)
    rest = " ".join(_TONE_RE.sub(" ", name).replace(",", " ").split())
    out: dict[str, Any] = {"skin_tone": None, "gender": None, "hair": None, "colour": None}
    if tones:
        out["skin_tone"] = tones[0] if len(set(tones)) == 1 else tones
    words = rest.split(" ")
    if words[0] in GENDERS and len(words) > 1 and "and" not in words:
        out["gender"], rest = words[0], " ".join(words[1:])
    for hair in HAIRS:
        if rest == hair or rest.endswith(" " + hair):
            out["hair"], rest = hair, rest[: -len(hair)].strip()
    for colour in sorted(COLOURS, key=len, reverse=True):
        if rest.startswith(colour + " ") and rest[len(colour) + 1 :] in COLOUR_SUBJECTS:
            out["colour"], rest = colour, rest[len(colour) + 1 :]
            break
    out["subject"] = rest or "person"  # "man red hair": a man, red hair, the subject "person"
    return out


def _is_flag(chars: str) -> bool:
    return any(0x1F1E6 <= ord(c) <= 0x1F1FF or 0xE0020 <= ord(c) <= 0xE007F for c in chars)


def emoji_entries() -> list[dict[str, Any]]:
    """Candidate emoji (fully qualified, no flags): {"char", "name", "aliases"}, in code-point order."""
    try:
        import emoji
    except ImportError as e:
        raise ImportError("rendering the emoji dataset needs the emoji package: pip install emoji") from e
    out = []
    for chars, data in sorted(emoji.EMOJI_DATA.items(), key=lambda kv: [ord(c) for c in kv[0]]):
        if data.get("status") != emoji.STATUS["fully_qualified"] or _is_flag(chars):
            continue
        name = data["en"].strip(":").replace("_", " ").lower()
        aliases = [a.strip(":").replace("_", " ").lower() for a in data.get("alias", [])]
        if len(chars.replace("\ufe0f", "")) == 1:
            aliases.append(unicodedata.name(chars[0], "").lower())
        aliases = [a for a in dict.fromkeys(aliases) if a and a != name]
        out.append({"char": chars, "name": name, "aliases": aliases})
    return out


def render_emoji(chars: str, font: Any, image_size: int = 32) -> np.ndarray | None:
    """One emoji as uint8 (S, S, 3) centred on white, or None when the font draws it as several glyphs or
    nothing (a sequence it does not know). `font` is a PIL FreeTypeFont at size 109."""
    from PIL import Image, ImageDraw

    if font.getbbox(chars)[2] > _CANVAS[0]:  # the font has no single glyph for this sequence
        return None
    glyph = Image.new("RGBA", _CANVAS, (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((0, 0), chars, font=font, embedded_color=True)
    box = glyph.getchannel("A").getbbox()
    if box is None:
        return None
    side = max(_CANVAS)
    page = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2  # centre the drawn pixels, keep their size
    page.alpha_composite(glyph, (round(side / 2 - cx), round(side / 2 - cy)))
    small = page.convert("RGB").resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8).copy()


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("RILL_CACHE") or Path.home() / ".cache" / "rill") / "data"


def _save_atomic(images: np.ndarray, entries: list[dict[str, Any]], stem: Path, meta: dict[str, str]) -> None:
    """images.safetensors then entries .json, each written to a temporary name and renamed into place."""
    from safetensors.torch import save_file

    stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = stem.with_name(f".{stem.name}.tmp-{os.getpid()}")
    save_file({"images": torch.from_numpy(images)}, str(tmp.with_suffix(".safetensors")), metadata=meta)
    os.chmod(tmp.with_suffix(".safetensors"), 0o644)
    tmp.with_suffix(".json").write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp.with_suffix(".json"), stem.with_suffix(".json"))
    os.replace(tmp.with_suffix(".safetensors"), stem.with_suffix(".safetensors"))


def _read(stem: Path) -> tuple[np.ndarray, list[dict[str, Any]]] | None:
    from safetensors import safe_open

    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not (st.is_file() and js.is_file()):
        return None
    with safe_open(str(st), framework="pt") as f:
        if (f.metadata() or {}).get("format") != str(_FORMAT):
            return None
        images = f.get_tensor("images").numpy()
    entries = json.loads(js.read_text(encoding="utf-8"))
    return (images, entries) if len(entries) == len(images) else None


def load_rendered(
    image_size: int = 32, font: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, list[dict[str, Any]], str]:
    """(uint8 images (E, S, S, 3), entries {"char", "name", "aliases"}, where they came from: "assets" |
    "cache" | "rendered").

    Without `font`: the shipped 32×32 set, else the cache, else a render from the system font (then cached).
    With `font`: that font's render (cached under its hash)."""
    check_choice("emoji image_size", image_size, SIZES)
    if font is None and (shipped := _read(_ASSETS / f"emoji-{image_size}")) is not None:
        return (*shipped, "assets")
    path = find_font(font)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    stem = _cache_root(cache_dir) / f"emoji-{image_size}-{digest}"
    if (cached := _read(stem)) is not None:
        return (*cached, "cache")
    from PIL import ImageFont

    face = ImageFont.truetype(str(path), _FONT_SIZE)
    images, entries = [], []
    for entry in emoji_entries():
        img = render_emoji(entry["char"], face, image_size)
        if img is not None and (img < 250).any():
            images.append(img)
            entries.append(entry)
    array = np.stack(images)
    _save_atomic(array, entries, stem, {"format": str(_FORMAT), "font_sha256": digest})
    return array, entries, "rendered"


def _pick(key: str, n: int) -> int:
    """A fixed pseudo-random choice in range(n) keyed by a string (the same on every machine)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n


def heldout_pairs(entries: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(attribute, value, subject) triples never seen in training. A subject here includes its gender
    ("man office worker"), so a held-out tone is one that subject+gender never wears in training."""
    out: set[tuple[str, str, str]] = set()
    genders: dict[str, set[str]] = {}
    for e in entries:
        if e["gender"] in ("man", "woman") and e["skin_tone"] is None:
            genders.setdefault(_hair_subject(e), set()).add(e["gender"])
    for subject, seen in sorted(genders.items()):
        if seen == {"man", "woman"} and _pick("gender:" + subject, 10) == 0:
            out.add(("gender", ("man", "woman")[_pick("g:" + subject, 2)], subject))
    # tones only of subjects still seen in training (not under a held-out gender)
    toned = sorted(
        {_person(e) for e in entries if isinstance(e["skin_tone"], str) and not is_heldout(e, out)}
    )
    for subject in toned:
        if _pick("tone:" + subject, 5) == 0:
            out.add(("skin_tone", SKIN_TONES[_pick("which:" + subject, 5)], subject))
    out |= {("colour", c, s) for c, s in HELDOUT_COLOURS}
    return out


def _hair_subject(e: dict[str, Any]) -> str:
    """The subject with its hair ("person with red hair"): what a gender or a tone is paired with."""
    return f"{e['subject']} with {e['hair']}" if e["hair"] else e["subject"]


def _person(e: dict[str, Any]) -> str:
    """Gender + subject + hair ("man office worker", "woman with curly hair"): what a tone is paired with."""
    subject = "" if e["gender"] and e["subject"] == "person" else e["subject"]
    hair = f"with {e['hair']}" if e["hair"] else ""
    return " ".join(w for w in (e["gender"], subject, hair) if w)


def is_heldout(e: dict[str, Any], pairs: set[tuple[str, str, str]]) -> bool:
    tone = e["skin_tone"] if isinstance(e["skin_tone"], str) else None
    return (
        (tone is not None and ("skin_tone", tone, _person(e)) in pairs)
        or (e["gender"] is not None and ("gender", e["gender"], _hair_subject(e)) in pairs)
        or (e["colour"] is not None and ("colour", e["colour"], e["subject"]) in pairs)
    )


def caption_name(e: dict[str, Any], k: int) -> str:
    """The k-th name of an entry (CLDR name, then its aliases, cycling), its skin tones moved to the end:
    "man, bald, medium-dark skin tone"."""
    names = [e["name"], *e["aliases"]]
    name = names[k % len(names)]
    tones = list(dict.fromkeys(_TONE_RE.findall(name)))
    base = " ".join(_TONE_RE.sub(" ", name).split())
    return f"{base}, {' and '.join(t + ' skin tone' for t in tones)}" if tones else base


class EmojiDataset(Dataset):
    """(image (3, S, S) float in [-1, 1], caption): each emoji once per template in TEMPLATES (module doc).

    `entries` holds each emoji's metadata (+ "heldout": bool); `entry_of[i]` the entry of item i;
    `heldout` the held-out (attribute, value, subject) triples; `source` "assets" | "cache" | "rendered".
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 32,
        font: str | None = None,
        cache_dir: str | None = None,
        templates: int = len(TEMPLATES),
        min_per_subject: int = 0,
    ) -> None:
        """templates: how many of TEMPLATES each emoji gets (1 = "an emoji of {name}" only: a third of the
        captions for a text encoder to encode up front). min_per_subject: repeat the items of each subject
        with fewer than this many (a rocket has 3, a waving hand 15: every tone) until it has at least
        that many, so single emoji are drawn as often as people in many tones (0 = each item once)."""
        check_choice("emoji split", split, SPLITS)
        check_choice("emoji templates", templates, range(1, len(TEMPLATES) + 1))
        if not isinstance(min_per_subject, int) or min_per_subject < 0:
            raise ValueError(f"emoji min_per_subject must be an integer >= 0, got {min_per_subject!r}")
        used = TEMPLATES[:templates]
        pixels, named, self.source = load_rendered(image_size, font, cache_dir)
        entries = [{**e, **parse_name(e["name"])} for e in named]
        self.heldout = heldout_pairs(entries)
        self.entries = [{**e, "heldout": is_heldout(e, self.heldout)} for e in entries]
        keep = [
            i for i, e in enumerate(self.entries) if split == "all" or e["heldout"] == (split == "heldout")
        ]
        self.split, self.image_shape = split, (3, image_size, image_size)
        count = Counter(self.entries[i]["subject"] for i in keep)
        repeats = {s: max(1, -(-min_per_subject // (n * len(used)))) for s, n in count.items()}  # ceil
        items = [(i, k, t) for i in keep for _ in range(repeats[self.entries[i]["subject"]])
                 for k, t in enumerate(used)]  # fmt: skip
        self.entry_of = [i for i, _, _ in items]
        self.captions = [t.format(caption_name(self.entries[i], k)) for i, k, t in items]
        unique = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # (E, 3, S, S) uint8
        self.images: Tensor = (
            unique[torch.tensor(self.entry_of, dtype=torch.long)].to(torch.float16) / 127.5 - 1
        )

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> tuple[Tensor, str]:
        return self.images[i].float(), self.captions[i]

    @property
    def subjects(self) -> list[str]:
        """The distinct subjects (attributes stripped) of this split."""
        return sorted({self.entries[i]["subject"] for i in set(self.entry_of)})
