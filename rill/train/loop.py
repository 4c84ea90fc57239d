"""The training loop: HF accelerate for devices and DDP, EMA, atomic checkpoints, exact resume, previews.

    from rill.train import train, train_preset
    path = train(train_preset("digits", steps=2000, out_dir="runs/digits"))  # runs/digits/model.safetensors
    rill train --preset digits --steps 2000 --out runs/digits [--resume] [--dry-run]   (rill.train.cli)

Determinism: the data order is a pure function of (seed, step) (one permutation of the data per epoch, each
process takes its slice of the global batch), training noise comes from one CPU generator per process whose
state is checkpointed, so a resumed run repeats an uninterrupted one exactly on the CPU.
Never loses work: SIGINT/SIGTERM save a checkpoint at the next step boundary and stop (TrainingInterrupted);
a non-finite loss stops with NonFiniteLossError before the weights are touched, leaving the last checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data import load_dataset
from ..model.bundle import DiffusionModel
from ..model.config import config_to_dict
from ..model.files import atomic_write_text, save_model
from ..viz.preview import save_preview
from .augment import add_augment_label, augment_batch
from .batches import CaptionBank, ShardedBatches, batch_indices
from .checkpoint import (
    Checkpoint,
    StopFlag,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from .config import TrainConfig, train_config_from_dict
from .ema import EMA
from .fit import fit_model_to_images
from .precision import Precision
from .warm_start import warm_start

__all__ = ["train", "NonFiniteLossError", "TrainingInterrupted", "RunFolderError", "lr_factor",
           "budget_progress", "batch_indices",
           "RESUMABLE_CHANGES", "run_in_folder", "prepare_run_folder"]  # fmt: skip

# fields a resumed run may change; anything else must equal the checkpoint's config (or it is another run)
RESUMABLE_CHANGES = ("steps", "minutes", "out_dir", "sample_every", "checkpoint_every", "keep_last",
                     "log_every", "preview_prompts", "num_threads", "cpu")  # fmt: skip
# these may change too, but only where the steps already taken keep their learning rate (checked step by
# step), so the resumed run still equals one uninterrupted run of the new config
SCHEDULE_CHANGES = ("lr_schedule", "cooldown_steps", "cooldown_fraction")


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN/inf; the message names the step and the last good checkpoint."""


class RunFolderError(ValueError):
    """--out cannot take this run: it holds another run (and neither resume nor overwrite was asked), it is a
    file, or it cannot be written. The message names the fix."""


def run_in_folder(out: str | Path) -> str | None:
    """What of a training run `out` already holds ("model.safetensors, 2 checkpoints, log.csv"), or None."""
    out = Path(out)
    if not out.is_dir():
        return None
    found = [name for name in ("model.safetensors", "log.csv") if (out / name).is_file()]
    ckpts = (
        [p for p in (out / "checkpoints").glob("step-*") if p.is_dir()]
        if (out / "checkpoints").is_dir()
        else []
    )
    if ckpts:
        found.insert(0, f"{len(ckpts)} checkpoint(s)")
    return ", ".join(found) or None


def prepare_run_folder(out: str | Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Check that `out` can take this run (see RunFolderError). A folder holding a run is refused unless
    resuming; with `overwrite` the old run is moved aside to OUT.old-<timestamp> (never deleted), whose path
    is returned. Nothing is created here: the folder is made when the run first writes to it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {str(out)!r} is a file, not a folder; pass a folder for the run")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise RunFolderError(
            f"--out {str(out)!r}: {str(parent)!r} is a file, not a folder; pass another --out"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunFolderError(
            f"--out {str(out)!r}: cannot write to {str(parent)!r} (permission denied); "
            "pass a folder you can write to"
        )
    held = run_in_folder(out)
    if held is None or resume:
        return None
    if not overwrite:
        raise RunFolderError(
            f"--out {str(out)!r} already holds a training run ({held}); continue it with --resume, or start "
            "a new run there with --overwrite (moves the old run to "
            f"{out.name}.old-<time>), or pass another --out"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = out.with_name(f"{out.name}.old-{stamp}")
    k = 1
    while aside.exists():
        k += 1
        aside = out.with_name(f"{out.name}.old-{stamp}-{k}")
    os.replace(out, aside)
    return aside


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped the run after saving a checkpoint (`.step`, `.checkpoint`, `.signum`)."""

    def __init__(self, step: int, checkpoint: Path, signum: int) -> None:
        super().__init__(
            f"interrupted by {signal.Signals(signum).name} at step {step}; checkpoint saved to "
            f"{checkpoint}; continue with --resume"
        )
        self.step, self.checkpoint, self.signum = step, checkpoint, signum


def lr_factor(step: int, cfg: TrainConfig, elapsed: float | None = None) -> float:
    """Learning-rate multiplier for the (0-based) step: linear warm-up, then constant, cosine to 0, or
    constant with a linear cooldown to 0 over the last `cooldown_steps` (warmup-stable-decay; Hägele et al.
    2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations", §3).

    "wsd" lays the cooldown over the budget, time and steps alike: with progress p = budget_progress(step,
    cfg, elapsed) the multiplier is min(1, (1 − p) / cooldown_fraction). `elapsed` (training seconds so far)
    counts only when cfg.minutes is set; without it the schedule is a function of the step alone."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "wsd":
        return min(1.0, max(0.0, (1.0 - budget_progress(step, cfg, elapsed)) / cfg.cooldown_fraction))
    if cfg.lr_schedule == "cooldown" and cfg.steps:
        return min(1.0, max(0.0, (cfg.steps - step) / cfg.cooldown_steps))
    if cfg.lr_schedule == "cosine" and cfg.steps:
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def budget_progress(step: int, cfg: TrainConfig, elapsed: float | None = None) -> float:
    """How much of the run's budget `step` (after `elapsed` training seconds) has used, in [0, 1]: the larger
    of step / steps and elapsed / (60 · minutes), whichever of the two budgets is set."""
    p = step / cfg.steps if cfg.steps else 0.0
    if cfg.minutes is not None and elapsed is not None:
        p = max(p, elapsed / (60.0 * cfg.minutes))
    return min(1.0, p)


class _Objective(nn.Module):
    """model.loss as a module, so DDP (via accelerate) sees the forward pass it synchronises."""

    def __init__(self, model: DiffusionModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x0: Tensor, cond: dict[str, Tensor] | None, generator: torch.Generator) -> Tensor:
        c = self.cfg
        return self.model.loss(
            x0, cond, generator=generator, p_mean=c.p_mean, p_std=c.p_std, min_snr_gamma=c.min_snr_gamma
        )


def _resolve_resume(cfg: TrainConfig, resume: bool | str | Path) -> Checkpoint | None:
    if not resume:
        return None
    path = Path(resume) if isinstance(resume, (str, Path)) else latest_checkpoint(cfg.out_dir)
    if path is None:
        raise FileNotFoundError(
            f"--resume: no valid checkpoint in {Path(cfg.out_dir) / 'checkpoints'}; "
            "start without --resume (or point --out at the run to continue)"
        )
    ckpt = load_checkpoint(path)
    saved, now = ckpt.state["config"], config_to_dict(cfg)
    skip = (*RESUMABLE_CHANGES, *SCHEDULE_CHANGES, "model")
    diff = sorted(k for k in saved if k not in skip and saved.get(k) != now.get(k))
    if diff:
        raise ValueError(
            f"--resume: the config differs from the checkpoint's in {diff} "
            f"(checkpoint: {[saved[k] for k in diff]}, now: {[now.get(k) for k in diff]}); "
            f"only {list(RESUMABLE_CHANGES)} may change when resuming (and {list(SCHEDULE_CHANGES)} for the "
            "steps not taken yet)"
        )
    _check_same_past_schedule(train_config_from_dict(saved), cfg, ckpt.step)
    return ckpt


def _check_same_past_schedule(old: TrainConfig, new: TrainConfig, done: int) -> None:
    """A resumed run may change its learning-rate schedule (or `steps`) only from the resumed step on."""
    for s in range(done):
        a, b = lr_factor(s, old), lr_factor(s, new)
        if not math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0):
            raise ValueError(
                f"--resume: the learning-rate schedule now differs at step {s} (multiplier {b:.6g}, the "
                f"checkpoint's run used {a:.6g}), before the resumed step {done}; a resumed run must keep "
                "the learning rates of the steps already taken: change --steps, --lr-schedule or "
                "--cooldown-steps so the new schedule only differs from there on (or start a new run)"
            )


class _RunLog:
    """log.csv (step, loss, lr, images/s, wall time; losses in full precision), TensorBoard if importable."""

    def __init__(self, out: Path, resumed_at: int | None) -> None:
        self.path = out / "log.csv"
        if resumed_at is not None and self.path.exists():  # those later steps run again: forget their rows
            with open(self.path, newline="") as f:
                lines = f.read().splitlines(keepends=True)
            keep = [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= resumed_at]
            atomic_write_text("".join(lines[:1] + keep), self.path)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is optional; log.csv always has everything
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None and "images_per_s" in row:
            for k in ("loss", "lr", "images_per_s"):
                self.tb.add_scalar(k, float(row[k]), int(row["step"]))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _restore(
    ckpt: Checkpoint, model: DiffusionModel, opt: Any, ema: EMA, noise: torch.Generator, acc: Any
) -> None:
    """Load weights, optimizer, EMA and every RNG from `ckpt` (this process's row of the noise generators)."""
    model.net.load_state_dict(ckpt.model)
    opt.load_state_dict(ckpt.optimizer)
    if ckpt.ema is not None:
        ema.load_state_dict(ckpt.ema)
    restore_rng(ckpt.rng_tensors, ckpt.rng_meta)
    gens = ckpt.rng_tensors.get("gen.noise")
    if gens is not None and gens.shape[0] == acc.num_processes:
        noise.set_state(gens[acc.process_index].contiguous())
    else:
        noise.manual_seed(noise.initial_seed() + ckpt.step)
        acc.print(
            f"note: resuming with {acc.num_processes} processes from a run with another count: training "
            "noise is reseeded (the run continues, but not bit-exactly)"
        )


def train(
    config: TrainConfig, *, resume: bool | str | Path = False, overwrite: bool = False, progress: bool = True
) -> Path:
    """Run `config`; returns the path of the final model file (OUT/model.safetensors, EMA weights).

    resume: True = continue from the newest valid checkpoint in config.out_dir; a path = that checkpoint.
    overwrite: config.out_dir may hold another run; it is moved aside to OUT.old-<time> first. Without resume
        or overwrite, an out_dir that holds a run raises RunFolderError (a folder belongs to one run).
    Raises TrainingInterrupted (after saving) on SIGINT/SIGTERM and NonFiniteLossError on a NaN/inf loss.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    cfg = train_config_from_dict(config_to_dict(config))  # our own copy: the caller's config is not rewritten
    ckpt = _resolve_resume(cfg, resume)
    # accelerate runs several CPU processes (gloo, e.g. under torchrun) only when told cpu=True. Precision is
    # rill's (Precision below, torch.autocast), so accelerate's process-wide state never has to change
    # between runs in one process.
    on_cpu = cfg.cpu or not (torch.cuda.is_available() or torch.backends.mps.is_available())
    try:
        acc = Accelerator(cpu=on_cpu)
    except ValueError as e:  # accelerate fixes the device choice once per process
        raise ValueError(
            f"this process already trained on another device and accelerate cannot switch ({e}); run this "
            "config in a new process"
        ) from None
    if cfg.num_threads:  # after the Accelerator, which may pick its own thread count for CPU processes
        torch.set_num_threads(cfg.num_threads)
    rank, world, main, dev = acc.process_index, acc.num_processes, acc.is_main_process, acc.device
    out = Path(cfg.out_dir)
    if main or not overwrite:  # the main process moves an old run aside; the others wait for it
        aside = prepare_run_folder(out, resume=bool(resume), overwrite=overwrite)
        if aside is not None:
            acc.print(f"rill train: moved the run that was in {out} to {aside}")
    acc.wait_for_everyone()
    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    dataset = load_dataset(cfg.data, **cfg.data_kwargs)
    shape = tuple(getattr(dataset, "image_shape", tuple(dataset[0][0].shape)))
    if getattr(dataset, "skipped", 0):
        acc.print(
            f"rill train: skipped {dataset.skipped} unreadable image(s) of {cfg.data!r} (warnings above)"
        )
    if shape != cfg.model.shape and cfg.data.startswith("folder:"):  # the net follows the images
        cfg.model, note = fit_model_to_images(cfg.model, shape)
        acc.print(f"rill train: {note}")
    if shape != cfg.model.shape:
        raise ValueError(
            f"data {cfg.data!r} gives samples of shape {shape} but model.shape={cfg.model.shape}; "
            f"set model.shape={list(shape)}"
        )
    cfg.model.dataset, cfg.model.cfg_dropout = cfg.data, cfg.caption_dropout
    add_augment_label(cfg)  # the net reads the augmentation's label (rill/train/augment.py)
    model = DiffusionModel(cfg.model).to(dev)
    cfg.model = model.config  # resolved (full backbone fields, encoder spec): what the files record
    out.mkdir(parents=True, exist_ok=True)  # only now: a run that fails to start leaves no empty folder
    batches = ShardedBatches(dataset, cfg.batch_size, cfg.seed, rank, world)
    bank = CaptionBank(model, batches.captions) if model.conditional else None
    if bank is not None:  # record the encoder's full spec (not just its name) in every file written
        model.config.text_encoder = dict(model.load_text_encoder().spec)
    if cfg.init_from and ckpt is None:  # a resumed run's checkpoint already holds the (trained) weights
        fresh = warm_start(model.net, cfg.init_from)
        if fresh:
            modules = ", ".join(sorted({k.split(".")[0] for k in fresh}))
            acc.print(
                f"note: --init-from {cfg.init_from}: {len(fresh)} tensors of {modules} start fresh "
                "(zero-initialised add-on: output-neutral)"
            )
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    halflife = None if cfg.ema_decay is not None else cfg.ema_halflife_images
    ema = EMA(model.net, cfg.ema_decay, halflife, cfg.ema_rampup)
    # training noise (σ, n, caption dropout): one CPU generator per process, checkpointed
    noise = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919 * (rank + 1))
    step, images_seen, wall_before = 0, 0, 0.0
    if ckpt is not None:
        _restore(ckpt, model, opt, ema, noise, acc)
        step, images_seen = ckpt.step, int(ckpt.state["images_seen"])
        wall_before = float(ckpt.state["wall_time"])
        threads = ckpt.state.get("threads")
        if threads is not None and threads != torch.get_num_threads():
            acc.print(
                f"note: resuming with {torch.get_num_threads()} torch threads, the checkpoint's run used "
                f"{threads}: the run continues, but not bit-exactly (CPU sums depend on the thread count); "
                f"pass --threads {threads} for an exact resume"
            )
    log = _RunLog(out, ckpt.step if ckpt else None) if main else None
    objective, opt = acc.prepare(_Objective(model, cfg), opt)
    amp = Precision(cfg.mixed_precision, dev)
    ema.to(dev)
    params = [p for p in model.net.parameters() if p.requires_grad]
    meta = {"rill.model_config": json.dumps(config_to_dict(model.config))}

    def wall() -> float:
        return wall_before + time.perf_counter() - t_start

    def checkpoint() -> Path:
        gens = noise.get_state()[None]  # every process's noise generator, gathered on the main one
        gens = acc.gather(gens.to(dev)).cpu() if world > 1 else gens
        path = out / "checkpoints" / f"step-{step:08d}"
        if main:
            rng_t, rng_m = capture_rng()
            state = dict(
                images_seen=images_seen,
                wall_time=wall(),
                config=config_to_dict(cfg),
                world_size=world,
                threads=torch.get_num_threads(),
            )
            sd, osd, esd = model.net.state_dict(), opt.state_dict(), ema.state_dict()
            ck = Checkpoint(step, sd, osd, {**rng_t, "gen.noise": gens}, rng_m, state, esd, meta)
            path = save_checkpoint(out, ck, cfg.keep_last)
        acc.wait_for_everyone()
        return path

    n_params = sum(p.numel() for p in params)
    acc.print(
        f"rill train: {n_params:,} parameters, {len(dataset)} samples of {shape}, {world} process(es) on "
        f"{dev}, batch {cfg.batch_size}, out {out}" + (f", resumed at step {step}" if ckpt else "")
    )
    # with --minutes the bar counts seconds of the budget (the run stops on time, seldom at --steps)
    timed = cfg.minutes is not None
    bar = tqdm(
        total=round(60 * cfg.minutes) if timed else cfg.steps,
        initial=min(round(wall_before), round(60 * cfg.minutes)) if timed else step,
        disable=not (main and progress),
        dynamic_ncols=True,
        unit="s" if timed else "step",
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]" if timed else None,
    )
    t_start = last_t = time.perf_counter()
    last_step, losses, preview = step, [], None
    with StopFlag() as stop:
        while cfg.steps is None or step < cfg.steps:
            x0, captions, _ = batches.get(step)
            drop = torch.rand(len(captions), generator=noise) < cfg.caption_dropout
            cond = bank.lookup(captions, drop, dev) if bank is not None else None
            x0, cond = augment_batch(x0, cond, cfg, noise, dev)
            with amp.autocast():
                loss = objective(x0.to(dev), cond, noise).mean()
            time_up = cfg.minutes is not None and wall() >= 60 * cfg.minutes
            flags = torch.tensor(
                [float(not torch.isfinite(loss)), float(stop.signum is not None), float(time_up)]
            )
            if world > 1:  # every process takes the same decision
                flags = acc.reduce(flags.to(dev), "sum").cpu()
            if flags[0] > 0:
                raise NonFiniteLossError(
                    f"non-finite loss ({loss.item()}) at step {step + 1}; stopped before the update. Last "
                    f"good checkpoint: {latest_checkpoint(out) or 'none'} (resume with --resume, perhaps "
                    "with a lower --lr or --set grad_clip=0.5)"
                )
            acc.backward(amp.scale(loss))
            if cfg.grad_clip is not None:
                amp.unscale_(opt)
                grad_norm = acc.clip_grad_norm_(params, cfg.grad_clip)
                if not torch.isfinite(torch.as_tensor(grad_norm)) and not amp.skips_bad_steps:
                    raise NonFiniteLossError(
                        f"non-finite gradient norm at step {step + 1}; stopped before the "
                        f"update. Last good checkpoint: {latest_checkpoint(out) or 'none'}"
                    )
            lr = cfg.lr * lr_factor(step, cfg, wall())
            for g in opt.param_groups:
                g["lr"] = lr
            amp.step(opt)
            opt.zero_grad(set_to_none=True)
            step, images_seen = step + 1, images_seen + cfg.batch_size
            ema.update(model.net, cfg.batch_size, images_seen)
            losses.append(loss.detach())
            if timed:
                bar.update(min(wall(), bar.total) - bar.n)
                bar.set_postfix_str(f"step {step}" + (f"/{cfg.steps}" if cfg.steps else ""), refresh=False)
            else:
                bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps or flags[1:].any():  # also the last step
                mean = torch.stack(losses).mean()
                mean = (acc.reduce(mean, "mean") if world > 1 else mean).item()
                now = time.perf_counter()
                ips = (step - last_step) * cfg.batch_size / max(now - last_t, 1e-9)
                row = dict(step=step, loss=repr(mean), lr=repr(lr), images_per_s=f"{ips:.1f}")
                if main:
                    log.write({**row, "wall_time": f"{wall():.2f}"})
                    if not timed:
                        bar.set_postfix(loss=f"{mean:.4f}", img_s=f"{ips:.0f}")
                last_t, last_step, losses = now, step, []
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                checkpoint()
            if cfg.sample_every and step % cfg.sample_every == 0 and main:
                if preview is None:
                    preview = DiffusionModel(model.config, text_encoder=model.load_text_encoder()).to(dev)
                _preview(preview, ema, cfg, out / "samples" / f"step-{step:08d}.png", batches.captions)
            if flags[1] > 0:
                bar.close()
                raise TrainingInterrupted(step, checkpoint(), stop.signum or signal.SIGTERM)
            if flags[2] > 0:
                break
    bar.close()
    checkpoint()
    final = out / "model.safetensors"
    if main:
        info = dict(
            step=step, images_seen=images_seen, wall_time=round(wall(), 2), seed=cfg.seed, data=cfg.data,
            batch_size=cfg.batch_size, lr=cfg.lr, lr_schedule=cfg.lr_schedule,
            threads=torch.get_num_threads(),
        )  # fmt: skip
        if cfg.lr_schedule == "wsd":
            info.update(cooldown_fraction=cfg.cooldown_fraction, minutes=cfg.minutes, steps_budget=cfg.steps)
        save_model(model, final, weights=ema.state_dict(), metadata=info)
        log.close()
        acc.print(f"done: {step} steps, model written to {final}")
    acc.wait_for_everyone()
    return final


def _preview(preview: DiffusionModel, ema: EMA, cfg: TrainConfig, path: Path, captions: list[str]) -> None:
    """EMA samples for the configured (or the first distinct) prompts; a failure is reported, never fatal."""
    try:
        ema.copy_to(preview.net)
        prompts = cfg.preview_prompts or (sorted(set(captions))[:8] if preview.conditional else [""])
        save_preview(preview, prompts, path)
    except Exception as e:  # a preview is a nicety: report it, keep training
        print(f"rill train: preview {path.name} failed: {e.__class__.__name__}: {e}", file=sys.stderr)
