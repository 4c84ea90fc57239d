"""The training loop: HF accelerate for devices and DDP, EMA, atomic checkpoints, exact resume, previews.

    from rill.config import train_preset
    path = train(train_preset("digits", steps=2000, out_dir="runs/digits"))   # -> runs/digits/model.safetensors
    python -m rill.train --preset digits --steps 2000 --out runs/digits [--resume] [--dry-run]

Determinism: the data order is a pure function of (seed, step) (one permutation of the data per epoch, each
process takes its slice of the global batch), training noise comes from one CPU generator per process whose
state is checkpointed, so a resumed run repeats an uninterrupted one exactly on the CPU.
Never loses work: SIGINT/SIGTERM save a checkpoint at the next step boundary and stop (TrainingInterrupted);
a non-finite loss stops with NonFiniteLossError before the weights are touched, leaving the last checkpoint.
"""

from __future__ import annotations

import csv
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .checkpoint import (Checkpoint, capture_rng, latest_checkpoint, load_checkpoint, restore_rng,
                         save_checkpoint)
from .config import TrainConfig, config_to_dict, train_config_from_dict
from .ema import EMA
from .model import DiffusionModel, save_model

__all__ = ["train", "main", "main_train", "NonFiniteLossError", "TrainingInterrupted", "lr_factor",
           "batch_indices", "RESUMABLE_CHANGES"]

# fields a resumed run may change; anything else must equal the checkpoint's config (or the run is not the same)
RESUMABLE_CHANGES = ("steps", "minutes", "out_dir", "sample_every", "checkpoint_every", "keep_last", "log_every",
                     "preview_prompts", "num_threads", "cpu")


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN/inf; the message names the step and the last good checkpoint."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped the run after saving a checkpoint (`.step`, `.checkpoint`, `.signum`)."""

    def __init__(self, step: int, checkpoint: Path, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; checkpoint saved to "
                         f"{checkpoint}; continue with --resume")
        self.step, self.checkpoint, self.signum = step, checkpoint, signum


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier for the (0-based) step: linear warm-up, then constant or cosine to 0."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine" and cfg.steps:
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> Tensor:
    """Dataset indices of the global batch of `step`: a fresh permutation of the n items per epoch, walked in
    order, so the order depends only on (seed, step) and resuming needs no data-loader state."""
    pos = torch.arange(step * global_batch, (step + 1) * global_batch)
    epochs, within = pos // n, pos % n
    out = torch.empty_like(pos)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + e))
        sel = epochs == e
        out[sel] = perm[within[sel]]
    return out


class _Batches:
    """This process's slice of each global batch; items are cached after the first read (datasets that render
    on the fly pay once)."""

    def __init__(self, dataset: Any, global_batch: int, seed: int, rank: int, world: int) -> None:
        if global_batch % world:
            raise ValueError(f"batch_size={global_batch} must be divisible by the number of processes ({world})")
        self.dataset, self.global_batch, self.seed = dataset, global_batch, seed
        self.per_rank, self.rank = global_batch // world, rank
        self.captions = list(dataset.captions)
        self.images = getattr(dataset, "images", None)
        if not isinstance(self.images, Tensor) or len(self.images) != len(dataset):
            self.images = None
        self._cache: dict[int, Tensor] = {}

    def indices(self, step: int) -> Tensor:
        idx = batch_indices(step, len(self.dataset), self.global_batch, self.seed)
        return idx[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def get(self, step: int) -> tuple[Tensor, list[str], Tensor]:
        idx = self.indices(step)
        if self.images is not None:
            x0 = self.images[idx].float()
        else:
            for i in idx.tolist():
                if i not in self._cache:
                    self._cache[i] = torch.as_tensor(self.dataset[i][0]).float()
            x0 = torch.stack([self._cache[i] for i in idx.tolist()])
        return x0, [self.captions[i] for i in idx.tolist()], idx


class _CaptionBank:
    """Every distinct caption (and "") encoded once up front; a batch's conditioning is a lookup."""

    def __init__(self, model: DiffusionModel, captions: list[str], chunk: int = 256) -> None:
        enc = model.text_encoder
        enc = getattr(enc, "encoder", enc)  # bypass CachedEncoder: the bank is the cache
        self.unique = sorted(set(captions) | {""})
        self.index = {c: i for i, c in enumerate(self.unique)}
        parts = [enc.encode(self.unique[i : i + chunk]) for i in range(0, len(self.unique), chunk)]
        self.cond = {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}
        if "mask" in self.cond and "tokens" in self.cond:  # drop all-padding columns (masked anyway)
            length = int(self.cond["mask"].any(0).nonzero().max()) + 1
            self.cond["tokens"], self.cond["mask"] = self.cond["tokens"][:, :length], self.cond["mask"][:, :length]

    def lookup(self, captions: list[str], drop: Tensor, device: torch.device) -> dict[str, Tensor]:
        ids = torch.tensor([self.index[c] for c in captions])
        ids = torch.where(drop, self.index[""], ids)  # caption dropout -> the unconditional embedding
        return {k: v[ids].to(device) for k, v in self.cond.items()}


class _Objective(nn.Module):
    """model.loss as a module, so DDP (via accelerate) sees the forward pass it synchronises."""

    def __init__(self, model: DiffusionModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x0: Tensor, cond: dict[str, Tensor] | None, generator: torch.Generator) -> Tensor:
        c = self.cfg
        return self.model.loss(x0, cond, generator=generator, p_mean=c.p_mean, p_std=c.p_std,
                               min_snr_gamma=c.min_snr_gamma)


class _StopFlag:
    """SIGINT/SIGTERM set a flag (the loop saves and stops at the next step boundary); a second SIGINT aborts."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint at the end of this step, then stopping "
              "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _resolve_resume(cfg: TrainConfig, resume: bool | str | Path) -> Checkpoint | None:
    if not resume:
        return None
    path = Path(resume) if isinstance(resume, (str, Path)) else latest_checkpoint(cfg.out_dir)
    if path is None:
        raise FileNotFoundError(f"--resume: no valid checkpoint in {Path(cfg.out_dir) / 'checkpoints'}; "
                                "start without --resume (or point --out at the run to continue)")
    ckpt = load_checkpoint(path)
    saved, now = ckpt.state["config"], config_to_dict(cfg)
    diff = sorted(k for k in saved if k not in RESUMABLE_CHANGES and k != "model" and saved[k] != now.get(k))
    if diff:
        raise ValueError(f"--resume: the config differs from the checkpoint's in {diff} "
                         f"(checkpoint: {[saved[k] for k in diff]}, now: {[now.get(k) for k in diff]}); "
                         f"only {list(RESUMABLE_CHANGES)} may change when resuming")
    return ckpt


def _log_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _truncate_log(path: Path, step: int) -> None:
    """On resume, forget log rows written after the checkpoint (those steps run again)."""
    if path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        path.unlink()
        for r in rows:
            _log_row(path, r)


def train(config: TrainConfig, *, resume: bool | str | Path = False, progress: bool = True) -> Path:
    """Run `config`; returns the path of the final model file (OUT/model.safetensors, EMA weights).

    resume: True = continue from the newest valid checkpoint in config.out_dir; a path = that checkpoint.
    Raises TrainingInterrupted (after saving) on SIGINT/SIGTERM and NonFiniteLossError on a NaN/inf loss.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from .data import load_dataset

    cfg = config
    ckpt = _resolve_resume(cfg, resume)
    # accelerate runs several CPU processes (gloo, e.g. under torchrun) only when told cpu=True
    on_cpu = cfg.cpu or not (torch.cuda.is_available() or torch.backends.mps.is_available())
    acc = Accelerator(cpu=on_cpu, mixed_precision=cfg.mixed_precision)
    if cfg.num_threads:  # after the Accelerator, which may pick its own thread count for CPU processes
        torch.set_num_threads(cfg.num_threads)
    rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    out = Path(cfg.out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    dataset = load_dataset(cfg.data, **cfg.data_kwargs)
    shape = tuple(getattr(dataset, "image_shape", tuple(dataset[0][0].shape)))
    if shape != cfg.model.shape:
        raise ValueError(f"data {cfg.data!r} gives samples of shape {shape} but model.shape={cfg.model.shape}; "
                         f"set model.shape={list(shape)}")
    cfg.model.dataset, cfg.model.cfg_dropout = cfg.data, cfg.caption_dropout
    model = DiffusionModel(cfg.model)
    cfg.model = model.config  # resolved (full backbone fields, encoder spec): what the files record
    model.to(acc.device)
    batches = _Batches(dataset, cfg.batch_size, cfg.seed, rank, world)
    bank = _CaptionBank(model, batches.captions) if model.conditional else None
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(model.net, cfg.ema_decay, None if cfg.ema_decay is not None else cfg.ema_halflife_images,
              cfg.ema_rampup)
    noise = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919 * (rank + 1))
    step, images_seen, wall_before = 0, 0, 0.0
    log_path = out / "log.csv"
    if ckpt is not None:
        model.net.load_state_dict(ckpt.model)
        opt.load_state_dict(ckpt.optimizer)
        if ckpt.ema is not None:
            ema.load_state_dict(ckpt.ema)
        restore_rng(ckpt.rng_tensors, ckpt.rng_meta)
        gens = ckpt.rng_tensors.get("gen.noise")
        if gens is not None and gens.shape[0] == world:
            noise.set_state(gens[rank].contiguous())
        else:
            noise.manual_seed(cfg.seed * 1_000_003 + 7919 * (rank + 1) + ckpt.step)
            acc.print(f"note: resuming with {world} processes from a {len(gens or [])}-process checkpoint: "
                      "training noise is reseeded (the run continues, but not bit-exactly)")
        step, images_seen = ckpt.step, int(ckpt.state["images_seen"])
        wall_before = float(ckpt.state["wall_time"])
        if main:
            _truncate_log(log_path, step)
    ema.to(acc.device)
    objective, opt = acc.prepare(_Objective(model, cfg), opt)
    params = [p for p in model.net.parameters() if p.requires_grad]
    model_meta = {"rill.model_config": _json(config_to_dict(model.config))}
    tb = _tensorboard(out) if main else None

    def checkpoint() -> Path:
        gens = noise.get_state()[None]
        if world > 1:
            gens = acc.gather(gens.to(acc.device)).cpu()
        path = out / "checkpoints" / f"step-{step:08d}"
        if main:
            rng_t, rng_m = capture_rng()
            rng_t["gen.noise"] = gens
            state = {"images_seen": images_seen, "wall_time": wall_before + time.perf_counter() - t_start,
                     "config": config_to_dict(cfg), "world_size": world}
            path = save_checkpoint(out, Checkpoint(step, model.net.state_dict(), opt.state_dict(), rng_t, rng_m,
                                                   state, ema.state_dict(), model_meta), cfg.keep_last)
        acc.wait_for_everyone()
        return path

    if main:
        n_params = sum(p.numel() for p in params)
        acc.print(f"rill train: {n_params:,} parameters, {len(dataset)} samples of {shape}, {world} process(es) "
                  f"on {acc.device}, batch {cfg.batch_size}, out {out}" + (f", resumed at step {step}" if ckpt else ""))
    bar = tqdm(total=cfg.steps, initial=step, disable=not (main and progress), dynamic_ncols=True, unit="step")
    t_start = time.perf_counter()
    last_t, last_step, losses, preview = t_start, step, [], None
    with _StopFlag() as stop:
        while cfg.steps is None or step < cfg.steps:
            x0, captions, _ = batches.get(step)
            x0 = x0.to(acc.device)
            drop = torch.rand(len(captions), generator=noise) < cfg.caption_dropout
            cond = bank.lookup(captions, drop, acc.device) if bank is not None else None
            with acc.autocast():
                loss = objective(x0, cond, noise).mean()
            elapsed = wall_before + time.perf_counter() - t_start
            flags = torch.tensor([float(not torch.isfinite(loss)), float(stop.signum is not None),
                                  float(cfg.minutes is not None and elapsed >= 60 * cfg.minutes)])
            if world > 1:
                flags = acc.reduce(flags.to(acc.device), "sum").cpu()
            if flags[0] > 0:
                last = latest_checkpoint(out)
                raise NonFiniteLossError(f"non-finite loss ({loss.item()}) at step {step + 1}; stopped before the "
                                         f"update. Last good checkpoint: {last or 'none'} (resume with --resume, "
                                         "perhaps with a lower --lr or --set grad_clip=0.5)")
            acc.backward(loss)
            if cfg.grad_clip is not None:
                grad_norm = acc.clip_grad_norm_(params, cfg.grad_clip)
                if not torch.isfinite(torch.as_tensor(grad_norm)):
                    raise NonFiniteLossError(f"non-finite gradient norm at step {step + 1}; stopped before the "
                                             f"update. Last good checkpoint: {latest_checkpoint(out) or 'none'}")
            lr = cfg.lr * lr_factor(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            images_seen += cfg.batch_size
            ema.update(model.net, cfg.batch_size, images_seen)
            losses.append(loss.detach())
            bar.update(1)
            if step % cfg.log_every == 0 or (cfg.steps is not None and step == cfg.steps):
                mean = acc.reduce(torch.stack(losses).mean(), "mean").item() if world > 1 else \
                    torch.stack(losses).mean().item()
                now = time.perf_counter()
                ips = (step - last_step) * cfg.batch_size / max(now - last_t, 1e-9)
                row = {"step": step, "loss": repr(mean), "lr": repr(lr), "images_per_s": f"{ips:.1f}",
                       "wall_time": f"{wall_before + now - t_start:.2f}"}
                if main:
                    _log_row(log_path, row)
                    bar.set_postfix(loss=f"{mean:.4f}", img_s=f"{ips:.0f}")
                    if tb is not None:
                        tb.add_scalar("loss", mean, step)
                        tb.add_scalar("lr", lr, step)
                last_t, last_step, losses = now, step, []
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                checkpoint()
            if cfg.sample_every and step % cfg.sample_every == 0 and main:
                if preview is None:
                    preview = DiffusionModel(model.config, text_encoder=model.text_encoder).to(acc.device)
                _save_preview(preview, ema, cfg, out / "samples" / f"step-{step:08d}.png", batches.captions)
            if flags[1] > 0:
                bar.close()
                raise TrainingInterrupted(step, checkpoint(), stop.signum or signal.SIGTERM)
            if flags[2] > 0:
                break
    bar.close()
    checkpoint()
    final = out / "model.safetensors"
    if main:
        info = {"step": step, "images_seen": images_seen, "wall_time": round(wall_before + time.perf_counter()
                                                                             - t_start, 2), "seed": cfg.seed}
        save_model(model, final, weights=ema.state_dict(), metadata=info)
        if tb is not None:
            tb.close()
        acc.print(f"done: {step} steps, model written to {final}")
    acc.wait_for_everyone()
    return final


def _save_preview(preview: DiffusionModel, ema: EMA, cfg: TrainConfig, path: Path, captions: list[str]) -> None:
    """A grid of EMA samples (rows = prompts) via rill.generate; never stops training if it fails."""
    try:
        from .explain import save_grid
        from .generate import generate

        ema.copy_to(preview.net)
        prompts = cfg.preview_prompts or (sorted(set(captions))[:8] if preview.conditional else [""])
        n = max(1, 64 // len(prompts))
        x = generate(preview, prompts, n=n, nfe=16, seed=0, device=preview.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        if x.ndim == 4:
            save_grid(x, path, nrow=n, scale=max(1, 128 // x.shape[-1]))
            return
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (256, 256), "white")
        draw = ImageDraw.Draw(img)
        pts = x.reshape(len(x), -1).float()
        if x.ndim == 2 and x.shape[1] == 2:  # points: scatter in [-3, 3]²
            for px, py in ((pts + 3) / 6 * 255).tolist():
                draw.point((px, 255 - py), fill="black")
        else:  # signals: the first 8 as curves
            for row in pts[:8]:
                ys = ((1 - row.clamp(-1, 1)) / 2 * 255).tolist()
                draw.line([(i * 255 / max(1, len(ys) - 1), y) for i, y in enumerate(ys)], fill="black")
        img.save(path)
    except Exception as e:  # a preview is a nicety: report, keep training
        print(f"rill train: preview at {path.name} failed: {e.__class__.__name__}: {e}", file=sys.stderr)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj)


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; log.csv always has everything
        return None
    return SummaryWriter(str(out / "tensorboard"))


def main(argv: list[str] | None = None) -> int:
    """`python -m rill.train` / `rill train`: parse, then train (or print the config with --dry-run)."""
    from .config import config_from_args, train_parser

    args = train_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"rill train: error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(dry_run(cfg))
        return 0
    try:
        train(cfg, resume=args.resume, progress=not args.quiet)
    except TrainingInterrupted as e:
        print(f"rill train: {e}", file=sys.stderr)
        return 128 + e.signum
    except (NonFiniteLossError, FileNotFoundError, ValueError) as e:
        print(f"rill train: error: {e}", file=sys.stderr)
        return 1
    return 0


main_train = main


def dry_run(config: TrainConfig) -> str:
    """The resolved config as JSON text (what --dry-run prints)."""
    from .config import config_to_json

    return config_to_json(train_config_from_dict(config_to_dict(config)))


if __name__ == "__main__":
    sys.exit(main())
