"""The models a server may run: the bundled ones and the *.safetensors files directly inside the folder given
at launch, by name only (a request never carries a path). Loaded with rill.model.files (safetensors only),
kept in a small cache."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from pathlib import Path

from ...model.files import is_model_file
from ..common import BUNDLED, bundled_path

__all__ = ["Catalog"]


class Catalog:
    def __init__(self, models_dir: Path | None, device: str = "cpu", cache_size: int = 3) -> None:
        self.device, self.cache_size = device, cache_size
        self.paths: dict[str, Path] = {}
        for name in BUNDLED:
            try:
                self.paths[name] = bundled_path(name)
            except Exception:  # a missing bundled file is simply not offered
                pass
        if models_dir is not None:
            root = Path(models_dir).resolve()
            for p in sorted(root.glob("*.safetensors")):
                plain = p.is_file() and not p.is_symlink() and p.resolve().parent == root
                if plain and p.stem not in self.paths and is_model_file(p):
                    self.paths[p.stem] = p
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._encoder = None
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self.paths)

    def config(self, name: str) -> dict:
        """The model's config from the file's metadata (no weights read)."""
        from safetensors import safe_open

        with safe_open(str(self.paths[name]), framework="pt", device="cpu") as f:
            return json.loads((f.metadata() or {}).get("rill.model_config", "{}"))

    def pixels(self, name: str) -> int:
        shape = self.config(name).get("shape") or ()
        return math.prod(shape[1:]) if len(shape) == 3 else 0

    def load(self, name: str):
        """The loaded model (cached; the MiniLM encoder is shared by the models that name it)."""
        from ...model.files import load_model

        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
            model = load_model(self.paths[name], device=self.device, text_encoder=None)
            spec = model.config.text_encoder
            if self._encoder is not None and spec == self._encoder[0]:
                model.text_encoder = self._encoder[1]
            elif model.conditional:
                self._encoder = (spec, model.load_text_encoder())
            self._cache[name] = model
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return model
