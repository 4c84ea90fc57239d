"""Evaluate a model end to end: prompts -> samples -> FD, precision / recall, diversity, adherence,
saturation, optional NLL. `evaluate_model` returns a JSON-able dict; `rill.evaluate.main_eval` is the command
around it.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .adherence import DigitJudge, digit_adherence, shapes_adherence
from .metrics import diversity, frechet_distance, precision_recall, saturation

__all__ = ["default_prompts", "read_prompt_file", "reference_images", "evaluate_model", "DATASET_LEVELS"]

DATASET_LEVELS = {"digits": 17, "shapes": 256}  # grey levels of the real pixels (digits: sklearn's 0..16)


def default_prompts(dataset: str) -> list[str]:
    """digits: "a handwritten digit k", k = 0..9. shapes: 24 captions of training compositions + 12 that
    name a held-out (colour, shape) pair, drawn once from the dataset's own caption generator (fixed seed)."""
    if dataset == "digits":
        return [f"a handwritten digit {k}" for k in range(10)]
    if dataset == "shapes":
        from rill.data import load_dataset

        out: list[str] = []
        for split, count in (("train", 24), ("heldout", 12)):
            ds = load_dataset("shapes", split=split, n=400, seed=101)
            picked = list(dict.fromkeys(ds.caption(i) for i in range(len(ds))))[:count]
            out += picked
        return out
    raise ValueError(
        f"no default prompt set for dataset {dataset!r}; pass --prompts FILE (JSON list or .txt)"
    )


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a .json file (a list of strings, or {"prompts": [...]}) or a text file (one prompt per
    line; blank lines and lines starting with '#' skipped). Errors name the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompt file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise ValueError(f"{p}:{line}: not UTF-8 text ({e.reason}); save the prompt file as UTF-8") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{p}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno}); expected a list of prompt "
                'strings, e.g. ["a handwritten digit 3", "a small red circle in the center"]'
            ) from None
        if isinstance(data, dict) and "prompts" in data:
            data = data["prompts"]
        if not isinstance(data, list):
            raise ValueError(
                f'{p}:1: expected a JSON list of prompt strings (or {{"prompts": [...]}}), '
                f"got a {type(data).__name__}"
            )
        lines = text.splitlines()
        for i, item in enumerate(data):
            if not isinstance(item, str):
                needle = json.dumps(item)
                line = next((n + 1 for n, s in enumerate(lines) if needle in s), 1)
                raise ValueError(
                    f"{p}:{line}: prompt #{i} is a {type(item).__name__} ({needle}), not a string"
                )
        prompts = data
    else:
        prompts = [s.strip() for s in text.splitlines() if s.strip() and not s.strip().startswith("#")]
    if not prompts:
        raise ValueError(f"{p}: no prompts in the file (JSON: a non-empty list; text: one prompt per line)")
    return prompts


def check_prompts(dataset: str, prompts: list[str], source: str) -> None:
    """shapes prompts must follow the caption templates (the checker reads them); name the bad one."""
    if dataset != "shapes":
        return
    from rill.data.shapes import parse_caption

    for i, prompt in enumerate(prompts):
        try:
            parse_caption(prompt)
        except ValueError as e:
            raise ValueError(f"{source}: prompt #{i} ({prompt!r}) cannot be checked: {e}") from None


def _shapes_real(prompts: list[str], per_prompt: int, seed: int, image_size: int) -> Tensor:
    """Real renders of each prompt's scene, in fresh random layouts (jittered position and size)."""
    from rill.data.shapes import parse_caption, place_scene, render_scene

    out = []
    for i, prompt in enumerate(prompts):
        scene = parse_caption(prompt)
        for j in range(per_prompt):
            placed = place_scene(scene, random.Random(f"rill-eval:{seed}:{i}:{j}"))
            out.append(
                torch.from_numpy(render_scene(placed, image_size)).permute(2, 0, 1).float() / 127.5 - 1
            )
    return torch.stack(out)


def reference_images(
    dataset: str, prompts: list[str], per_prompt: int, image_size: int = 32
) -> tuple[Tensor, Tensor]:
    """(reference set, real floor set) of real images for FD / precision / recall.

    digits: the real "train" split (1438 images); the floor set: held-out digits, as many as will be generated
    (at most 359).
    shapes: renders of the prompts' scenes in random layouts, at least 600 in all; the floor set is a second,
    independent render with `per_prompt` per prompt (the size of the generated set).
    The floor — FD between two real sets — is what a perfect generator would score at this sample size.
    """
    from rill.data import load_dataset

    if dataset == "digits":
        held = load_dataset("digits", split="heldout").images.float()
        order = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))
        floor = held[order[: min(len(held), per_prompt * len(prompts))]]  # as many as generated, up to 359
        return load_dataset("digits", split="train").images.float(), floor
    if dataset == "shapes":
        ref_per = max(per_prompt, math.ceil(600 / len(prompts)))
        return _shapes_real(prompts, ref_per, 0, image_size), _shapes_real(prompts, per_prompt, 1, image_size)
    raise ValueError(f"no real reference set for dataset {dataset!r} (supported: digits, shapes)")


def _feature_net(spec: Any, dataset: str, cache: str | None):
    from .features import HFImageFeatures, classifier_for

    if hasattr(spec, "features"):  # a ready feature net (FeatureCNN, HFImageFeatures, ...)
        return spec, type(spec).__name__
    if spec == "classifier":
        return classifier_for(dataset, cache), f"rill-{dataset}-cnn"
    if spec.startswith("hf:"):
        return HFImageFeatures(spec[3:]), f"hf:{Path(spec[3:]).name}"
    raise ValueError(
        f"--features {spec!r}: use 'classifier' (rill's own CNN) or 'hf:PATH' (a local CLIP / DINOv2 folder)"
    )


def _nll(model: Any, dataset: str, count: int, seed: int, rtol: float) -> dict[str, Any]:
    from rill.data import load_dataset

    from .likelihood import bits_per_dim

    ds = load_dataset(dataset, split="heldout")
    idx = list(range(min(count, len(ds))))
    images = torch.stack([ds[i][0] for i in idx])
    captions = [ds[i][1] for i in idx]
    cond = model.encode(captions) if getattr(model, "conditional", True) else None
    lo, hi = float(model.config.sigma_min), float(model.config.sigma_max)
    t0 = time.time()
    out = bits_per_dim(
        model.denoiser,
        images,
        cond=cond,
        levels=DATASET_LEVELS[dataset],
        sigma_min=lo,
        sigma_max=hi,
        rtol=rtol,
        atol=rtol,
        generator=torch.Generator().manual_seed(seed),
    )
    bpd = out["bpd"].numpy()
    return {
        "bpd": float(bpd.mean()),
        "bpd_stderr": float(bpd.std(ddof=1) / math.sqrt(len(bpd))) if len(bpd) > 1 else None,
        "images": len(bpd),
        "nfe": int(out["nfe"]),
        "levels": DATASET_LEVELS[dataset],
        "seconds": round(time.time() - t0, 1),
        "split": "heldout",
        "estimator": "PF-ODE, RK45 in log sigma, Hutchinson (1 Rademacher probe), uniform dequantisation",
    }


def evaluate_model(
    model: Any,
    dataset: str,
    prompts: list[str] | None = None,
    *,
    n: int = 50,
    nfe: int = 16,
    sampler: str = "auto",
    guidance: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
    seed: int = 0,
    features: Any = "classifier",
    cache: str | None = None,
    nll: int = 0,
    nll_rtol: float = 1e-5,
    clip: str | None = None,
    batch_size: int = 128,
    log: bool = True,
) -> dict[str, Any]:
    """Generate `n` images per prompt and score them (see the module docstring). Returns a JSON-able dict.
    emoji: its own prompt sets, judges and targets (emoji_eval.py); no prompts, features, nll or clip."""
    from rill.inference.generate import generate

    if dataset == "emoji":
        from .emoji_eval import evaluate_emoji

        extra = dict(prompts=prompts, nll=nll, clip=clip, features=features != "classifier")
        if given := [k for k, v in extra.items() if v]:
            raise ValueError(f"rill eval emoji uses its own prompts and judges; drop {', '.join(given)}")
        return evaluate_emoji(
            model, n=n, nfe=nfe, sampler=sampler, guidance=guidance, guidance_interval=guidance_interval,
            seed=seed, cache=cache, batch_size=batch_size, log=log,
        )  # fmt: skip

    prompts = list(prompts) if prompts is not None else default_prompts(dataset)
    check_prompts(dataset, prompts, "prompts")
    if n < 2:
        raise ValueError(f"n (images per prompt) must be >= 2 for diversity and the Gaussian fits, got {n}")
    t0 = time.time()
    images = generate(
        model, prompts, n=n, nfe=nfe, sampler=sampler, guidance=guidance, guidance_interval=guidance_interval,
        seed=seed, batch_size=batch_size,
    )  # (P·n, C, H, W), prompt-major  # fmt: skip
    t_gen = time.time() - t0
    if log:
        print(f"rill eval: generated {len(images)} images ({len(prompts)} prompts x {n}) in {t_gen:.0f}s")
    per_image_prompts = [p for p in prompts for _ in range(n)]
    ref, floor = reference_images(dataset, prompts, n, image_size=int(images.shape[-1]))
    net, feat_name = _feature_net(features, dataset, cache)
    from .features import extract_features

    f_gen, f_ref, f_floor = (extract_features(net, x) for x in (images, ref, floor))
    precision, recall = precision_recall(f_ref, f_gen, k=3)
    groups = [f_gen[i * n : (i + 1) * n] for i in range(len(prompts))]
    result: dict[str, Any] = {
        "dataset": dataset,
        "prompts": len(prompts),
        "images": len(images),
        "n_per_prompt": n,
        "nfe": nfe,
        "sampler": sampler,
        "guidance": guidance if guidance is not None else getattr(model.config, "guidance", None),
        "guidance_interval": guidance_interval or getattr(model.config, "guidance_interval", None),
        "seed": seed,
        "features": feat_name,
        "feature_dim": int(f_gen.shape[1]),
        "reference_images": len(ref),
        "fd": frechet_distance(f_ref, f_gen),
        "fd_real_floor": frechet_distance(f_ref, f_floor),
        "precision": precision,
        "recall": recall,
        "diversity": diversity(groups),
        **{k: v for k, v in saturation(images).items()},
        "saturation_real": saturation(ref)["saturation"],
        "clipped_real": saturation(ref)["clipped"],
    }
    if dataset == "shapes":
        result["diversity_real"] = diversity([f_floor[i * n : (i + 1) * n] for i in range(len(prompts))])
        adh = shapes_adherence(images, per_image_prompts)
        real_adh = shapes_adherence(floor, per_image_prompts)
        result.update(
            adherence=adh["all"]["correct"],
            adherence_heldout=adh["heldout"]["correct"] if adh["heldout"] else None,
            adherence_seen=adh["seen"]["correct"] if adh["seen"] else None,
            adherence_detail=adh,
            adherence_real=real_adh["all"]["correct"],
        )
        from .clean_check import clean_summary

        clean, clean_real = clean_summary(images, per_image_prompts), clean_summary(floor, per_image_prompts)
        result.update(
            background_std=clean["background_std"],
            background_std_real=clean_real["background_std"],
            blob_images=clean["blob_images"],
            blob_images_real=clean_real["blob_images"],
            blobs=clean["blobs"],
        )
    elif dataset == "digits":
        judge = DigitJudge()
        adh = digit_adherence(images, per_image_prompts, judge)
        result.update(
            adherence=adh["accuracy"],
            adherence_heldout=None,
            adherence_detail=adh,
            adherence_real=judge.accuracy_on_real("train"),
            adherence_judge=f"RBF-SVM fitted on the {judge.n_fit} held-out real digits",
        )
    if clip:
        from .adherence import ClipScorer

        result["clip_score"] = ClipScorer(clip)(images, per_image_prompts)
    if nll:
        result["nll"] = _nll(model, dataset, nll, seed, nll_rtol)
    result["seconds"] = round(time.time() - t0, 1)
    result["generation_seconds"] = round(t_gen, 1)
    return result


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of the headline numbers, with the real-data reference beside each."""
    if "targets" in result:  # emoji: each measure against its target
        from .emoji_eval import format_emoji_table

        return format_emoji_table(result)

    def fmt(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else f"{v:.4g}" if isinstance(v, float) else str(v)

    rows = [
        ("Fréchet distance", fmt(result["fd"]), f"real vs real: {fmt(result['fd_real_floor'])}"),
        ("precision (k=3)", fmt(result["precision"], True), ""),
        ("recall (k=3)", fmt(result["recall"], True), ""),
        (
            "diversity",
            fmt(result["diversity"]),
            f"real: {fmt(result.get('diversity_real'))}" if "diversity_real" in result else "",
        ),
        (
            "adherence",
            fmt(result.get("adherence"), True),
            f"real images: {fmt(result.get('adherence_real'), True)}",
        ),
    ]
    if result.get("adherence_heldout") is not None:
        rows.append(("adherence, held-out pairs", fmt(result["adherence_heldout"], True), ""))
        rows.append(("adherence, seen pairs", fmt(result.get("adherence_seen"), True), ""))
    if "background_std" in result:
        rows.append(
            ("background std", fmt(result["background_std"]), f"real: {fmt(result['background_std_real'])}")
        )
        rows.append(
            (
                "images with a patch blob",
                fmt(result["blob_images"], True),
                f"real: {fmt(result['blob_images_real'], True)} ({result['blobs']} blobs in all)",
            )
        )
    rows += [
        ("mean saturation", fmt(result["saturation"]), f"real: {fmt(result['saturation_real'])}"),
        ("clipped pixels", fmt(result["clipped"], True), f"real: {fmt(result['clipped_real'], True)}"),
    ]
    if "clip_score" in result:
        rows.append(("CLIP score", fmt(result["clip_score"]), ""))
    if "nll" in result:
        nll = result["nll"]
        rows.append(
            (
                "NLL (bits/dim)",
                f"{nll['bpd']:.3f} ± {fmt(nll['bpd_stderr'])}",
                f"{nll['images']} held-out images, {nll['nfe']} NFE",
            )
        )
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    head = (
        f"{result['dataset']}: {result['images']} images "
        f"({result['prompts']} prompts x {result['n_per_prompt']}), "
        f"sampler {result['sampler']}, NFE {result['nfe']}, guidance {result['guidance']}, "
        f"features {result['features']}"
    )
    lines = [head, *(f"  {a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows)]
    if result["images"] < 2 * result.get("feature_dim", 0):
        lines.append(
            f"  note: {result['images']} images for {result['feature_dim']}-wide features: the Gaussian fits "
            "are noisy and FD favours low-variance sets; use -n so that there are >= 500 images"
        )
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
