"""Feature networks for Fréchet distance and precision / recall, and the digit classifier for adherence.

Offline default: a small CNN that rill trains on the dataset's own real images (about a minute on a CPU) and
caches as safetensors + JSON; its penultimate layer (128 numbers) is the feature. Features, not adherence: the
digit classifier that judges prompt adherence (`DigitJudge`, adherence.py) is a separate model fitted only on
the held-out digits. digits: 10 classes; emoji: one class per emoji (3,527, shift-augmented); shapes:
multi-label (colour, shape) pairs present + occupied 3x3 cells + sizes present, so the features see what the
captions say. Pretrained Inception / CLIP / DINOv2 features load through transformers from a LOCAL folder only
(`HFImageFeatures`); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FeatureCNN", "train_classifier", "classifier_for", "cached_net", "cache_dir", "dataset_arrays",
    "HFImageFeatures", "extract_features", "VERSION",
]  # fmt: skip

VERSION = 1  # bump when the architecture or the recipe changes: cached nets of another version are retrained
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FeatureCNN(nn.Module):
    """conv(3x3) blocks with stride-2 downsampling to a 2x2 (8 px input) or 4x4 map, flattened (keeping where
    things are), then a 128-wide penultimate layer (the features) and a linear head."""

    def __init__(
        self, in_channels: int, image_size: int, num_outputs: int, width: int = 32, feature_dim: int = 128
    ):
        super().__init__()
        self.hparams = dict(
            in_channels=in_channels,
            image_size=image_size,
            num_outputs=num_outputs,
            width=width,
            feature_dim=feature_dim,
        )
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU()]
        size, ch = image_size, width
        while size > 4 or (size > 2 and image_size <= 8):
            out = min(ch * 2, 4 * width)
            layers += [
                nn.Conv2d(ch, out, 3, stride=2, padding=1),
                nn.GroupNorm(8, out),
                nn.SiLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.SiLU(),
            ]
            size, ch = (size + 1) // 2, out
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(ch * size * size, feature_dim)
        self.head = nn.Linear(feature_dim, num_outputs)

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim) penultimate activations."""
        return F.silu(self.fc(self.body(x).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where trained evaluation nets live: `path`, else $RILL_CACHE/eval, else ~/.cache/rill/eval."""
    if path is not None:
        return Path(path)
    root = os.environ.get("RILL_CACHE") or Path.home() / ".cache" / "rill"
    return Path(root) / "eval"


def _shapes_targets(scene: list[dict[str, Any]]) -> Tensor:
    from rill.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES

    combos = [(c, s) for c in COLOURS for s in SHAPES]
    t = torch.zeros(len(combos) + len(POSITIONS) + len(SIZES))
    for o in scene:
        t[combos.index((o["colour"], o["shape"]))] = 1
        t[len(combos) + list(POSITIONS).index(o["position"])] = 1
        t[len(combos) + len(POSITIONS) + list(SIZES).index(o["size"])] = 1
    return t


def dataset_arrays(dataset: str, split: str, n: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Real images (N, C, H, W) in [-1, 1] and targets: class ids (digits; emoji: the entry index) or
    multi-hot vectors (shapes)."""
    from rill.data import load_dataset

    if dataset == "digits":
        ds = load_dataset("digits", split=split)
        images, labels = ds.images.float(), torch.as_tensor(ds.labels, dtype=torch.long)
        if n is not None:
            images, labels = images[:n], labels[:n]
        return images, labels
    if dataset == "shapes":
        ds = load_dataset("shapes", split=split, n=n or 6000, seed=seed)
        images = torch.stack([ds[i][0] for i in range(len(ds))])
        targets = torch.stack([_shapes_targets(ds.scene(i)) for i in range(len(ds))])
        return images, targets
    if dataset == "emoji":  # one class per emoji (3,527): the features see subject, tone and colour
        ds = load_dataset("emoji", split=split)
        first = [j for j, e in enumerate(ds.entry_of) if j == 0 or e != ds.entry_of[j - 1]]  # one item each
        images = ds.images[first].float()
        labels = torch.tensor([ds.entry_of[j] for j in first], dtype=torch.long)
        return (images[:n], labels[:n]) if n is not None else (images, labels)
    raise ValueError(
        f"no evaluation classifier for dataset {dataset!r}; rill trains them for 'digits', 'shapes' and "
        "'emoji' (for other data pass --features hf:PATH with a local CLIP / DINOv2 folder)"
    )


def train_classifier(
    images: Tensor,
    targets: Tensor,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 32,
    seed: int = 0,
    shift: int = 1,
    corruption: bool = False,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    log: bool = False,
) -> FeatureCNN:
    """Train a FeatureCNN: cross-entropy for class ids (1-D long targets), binary cross-entropy for multi-hot
    targets. Random translations by up to `shift` pixels augment the (few) real images.

    corruption (multi-hot targets only): half of each batch gets Gaussian noise (std s ~ U(0, 0.4)) and a blur
    (mix b ~ U(0, 1) with a 3x3 box blur), and two extra outputs regress s / 0.4 and b, so that the features
    also see image quality, not only content (a pure classifier learns to ignore noise and blur).
    augment: (batch, generator) -> batch, applied after the shift (emoji_check: scale, blur, noise)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    multilabel = targets.ndim == 2
    outputs = targets.shape[1] if multilabel else int(targets.max()) + 1
    if corruption and not multilabel:
        raise ValueError(
            "corruption=True needs multi-hot targets (the two quality outputs are regressed with BCE)"
        )
    outputs += 2 if corruption else 0
    net = FeatureCNN(images.shape[1], images.shape[-1], outputs, width=width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, len(images) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    t0, step = time.time(), 0
    for _ in range(epochs):
        perm = torch.randperm(len(images), generator=g)
        for i in range(0, len(images) - batch_size + 1 if len(images) >= batch_size else 1, batch_size):
            idx = perm[i : i + batch_size]
            x = images[idx]
            if shift > 0:
                dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
                x = torch.roll(x, (dy, dx), dims=(2, 3))
            if augment is not None:
                x = augment(x, g)
            y = targets[idx]
            if corruption:
                half = (torch.rand(len(x), generator=g) < 0.5).float()
                s = 0.4 * torch.rand(len(x), generator=g) * half
                b = torch.rand(len(x), generator=g) * half
                blurred = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
                bb = b.view(-1, 1, 1, 1)
                x = (1 - bb) * x + bb * blurred + s.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
                y = torch.cat([y, torch.stack([s / 0.4, b], 1)], 1)
            logits = net(x)
            loss = F.binary_cross_entropy_with_logits(logits, y) if multilabel else F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step < steps - 1:
                sched.step()
            step += 1
    if log:
        print(
            f"  trained {type(net).__name__} on {len(images)} images, {step} steps, {time.time() - t0:.0f}s"
        )
    return net.eval().requires_grad_(False)


def _recipe(dataset: str) -> dict[str, Any]:
    """What a cached feature net is trained on: the dataset's real images ("all" split)."""
    if dataset == "emoji":  # 3,527 classes of one image each: a narrow net, few epochs (minutes on a CPU)
        return {"version": VERSION, "dataset": dataset, "split": "all", "n": None, "epochs": 8, "width": 16,
                "seed": 0}  # fmt: skip
    if dataset == "shapes":
        return {
            "version": VERSION,
            "dataset": dataset,
            "split": "all",
            "n": 4000,
            "epochs": 6,
            "width": 16,
            "corruption": True,  # shapes v2: quality-aware features (see train_classifier)
            "seed": 0,
        }
    return {
        "version": VERSION,
        "dataset": dataset,
        "split": "all",
        "n": None,
        "epochs": 15,
        "width": 32,
        "seed": 0,
    }


def classifier_for(dataset: str, directory: str | os.PathLike | None = None, log: bool = True) -> FeatureCNN:
    """The cached feature net for `dataset` ("digits" | "shapes" | "emoji"), trained on first use (about a
    minute on a CPU) and stored as `{directory}/{dataset}-features.safetensors` + `.json` (the recipe; another
    recipe or VERSION retrains)."""
    recipe = _recipe(dataset)

    def train() -> FeatureCNN:
        images, targets = dataset_arrays(dataset, recipe["split"], recipe["n"], seed=recipe["seed"])
        return train_classifier(
            images,
            targets,
            epochs=recipe["epochs"],
            width=recipe["width"],
            seed=recipe["seed"],
            corruption=recipe.get("corruption", False),
            log=log,
        )

    return cached_net(f"{dataset}-features", recipe, train, directory, log, f"the {dataset} feature net")


def cached_net(
    name: str,
    recipe: dict[str, Any],
    train: Callable[[], FeatureCNN],
    directory: str | os.PathLike | None = None,
    log: bool = True,
    what: str = "an evaluation net",
) -> FeatureCNN:
    """`{directory}/{name}.safetensors` + `.json` if its recorded recipe equals `recipe`, else the net of
    `train()`, saved there (weights written to a temporary name and renamed into place)."""
    from safetensors.torch import load_file, save_file

    folder = cache_dir(directory)
    weights, meta = folder / f"{name}.safetensors", folder / f"{name}.json"
    if weights.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("recipe") == recipe:
            net = FeatureCNN(**info["hparams"])
            net.load_state_dict(load_file(str(weights)))
            return net.eval().requires_grad_(False)
    if log:
        print(f"rill eval: training {what} on real images (once; cached in {folder})")
    net = train()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_name(weights.name + f".tmp-{os.getpid()}")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    os.replace(tmp, weights)
    meta.write_text(json.dumps({"recipe": recipe, "hparams": net.hparams}, indent=2))
    return net


@torch.no_grad()
def extract_features(net: Any, images: Tensor, batch_size: int = 256) -> Tensor:
    """(N, F) features of (N, C, H, W) images in [-1, 1] with a FeatureCNN or an HFImageFeatures."""
    return torch.cat(
        [net.features(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)]
    )


def local_hf_folder(path: str | os.PathLike, purpose: str, holding: str):
    """Import transformers and check that `path` is a local model folder (rill never downloads weights).
    Returns (the transformers module, the folder as a Path); clear errors name what is missing."""
    try:
        import transformers
    except ImportError as e:
        raise ImportError(f"{purpose} need transformers: pip install transformers") from e
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: no config.json; pass a local folder holding {holding} saved with save_pretrained "
            "(rill never downloads weights)"
        )
    return transformers, path


class HFImageFeatures:
    """Pretrained image features through transformers, from a LOCAL folder (config.json + weights):
    CLIP (vision tower, pooled output), DINOv2 (CLS token after the final norm) or any AutoModel vision
    backbone (its pooler_output, else the mean of its last hidden states). Inception-v3 (FID's net) is not a
    transformers model: load its features yourself and pass arrays to `frechet_distance`.

    Images in [-1, 1] are mapped to [0, 1], grey is repeated to RGB, resized (bilinear, antialiased) to the
    model's image_size and normalised with preprocessor_config.json's mean / std (else CLIP's or ImageNet's).
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        transformers, path = local_hf_folder(
            path, "pretrained image features", "a CLIP / DINOv2 / vision model"
        )
        from rill.conditioning.text import quiet_transformers  # mutes load reports and progress bars

        with quiet_transformers():
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
            self.model_type = config.model_type
            if self.model_type in ("clip", "clip_vision_model"):
                cls, mean_std = transformers.CLIPVisionModel, (_CLIP_MEAN, _CLIP_STD)
            elif self.model_type == "dinov2":
                cls, mean_std = transformers.Dinov2Model, (_IMAGENET_MEAN, _IMAGENET_STD)
            else:
                cls, mean_std = transformers.AutoModel, (_IMAGENET_MEAN, _IMAGENET_STD)
            model = cls.from_pretrained(path, local_files_only=True)
        self.model = model.eval().requires_grad_(False).to(device)
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            p = json.loads(pre.read_text())
            mean_std = (tuple(p.get("image_mean", mean_std[0])), tuple(p.get("image_std", mean_std[1])))
        vision = getattr(self.model.config, "vision_config", self.model.config)
        self.image_size = int(getattr(vision, "image_size", 224))
        self.channels = int(getattr(vision, "num_channels", 3))
        self.mean = torch.tensor(mean_std[0]).view(1, -1, 1, 1)
        self.std = torch.tensor(mean_std[1]).view(1, -1, 1, 1)
        self.device = torch.device(device)

    def preprocess(self, images: Tensor) -> Tensor:
        x = ((images.float() + 1) / 2).clamp(0, 1)
        if x.shape[1] == 1 and self.channels == 3:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(
            x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
        )
        return ((x - self.mean) / self.std).to(self.device)

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        out = self.model(pixel_values=self.preprocess(images))
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(1)
        return pooled.reshape(pooled.shape[0], -1).float().cpu()
