"""Peer baseline: rill's digits recipe vs a diffusers UNet2DConditionModel + DDPMScheduler, same data, same
text embeddings, same wall-clock budget on the same machine, evaluated with the same metrics at equal NFE.

    python benchmarks/train_vs_diffusers.py --minutes 4     # -> benchmarks/results/train_vs_diffusers.*
    python benchmarks/train_vs_diffusers.py --data shapes --minutes 30 \
        --out benchmarks/results/train_vs_diffusers_shapes_30min.md

Peer recipe (diffusers' text-to-image training loop, sized down): ε-prediction MSE (Ho et al. 2020, Eq. 14) on
DDPMScheduler's linear β schedule (1e-4 … 0.02, 1000 steps), t ~ U{0..999}, AdamW, linear warm-up then
constant lr, grad clipping 1.0, 10% caption dropout (for CFG), EMA with diffusers' EMAModel (decay 0.9999,
warm-up power 2/3, the setting its docstring recommends for short runs). UNet2DConditionModel with
block_out_channels=(24, 48) and cross-attention to the same MiniLM token embeddings (cross_attention_dim=384):
~0.69M parameters vs rill's ~0.72M. rill: the "digits" preset (EDM preconditioning and loss, half-life EMA),
either through `rill.train` (--mode sequential) or through the same calls in a loop that alternates steps with
the peer (--mode interleaved, the default: fair on a CPU shared with other work).
Both train on the digits "train" split (the held-out digits judge adherence) and sample with the same rill
sampler at the same NFE and guidance; the peer is turned into the σ contract by rill's VPAdapter (ε on the
same linear VP table).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rill.core.parametrisations import VPAdapter  # noqa: E402
from rill.core.schedules import VPSchedule  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

# per dataset: rill's preset, one sample's shape, the peer's block widths (sized to rill's parameter count),
# the evaluation's images per prompt and how the report names the data, the prompts and the adherence judge
SETUPS = {
    "digits": dict(shape=(1, 8, 8), widths=(24, 48), n=50, about='the 1438 digits of the "train" split',
                   prompts='the 10 prompts "a handwritten digit k"',
                   judge="adherence = RBF-SVM fitted only on the 359 held-out digits",
                   floor="held-out digits vs the train split"),
    "shapes": dict(shape=(3, 32, 32), widths=(32, 64, 96), n=16,
                   about='the 20,000 scenes of the shapes "train" split (no held-out colour-shape pair)',
                   prompts="rill eval's 36 shapes prompts (24 seen compositions, 12 naming a held-out pair)",
                   judge="adherence = colour and shape of every named object read by rill's shapes judge",
                   floor="two independent renders of the prompts' scenes"),
}  # fmt: skip


def peer_unet(shape: tuple[int, ...] = (1, 8, 8), widths: tuple[int, ...] = (24, 48)) -> nn.Module:
    from diffusers import UNet2DConditionModel

    n, (channels, sample_size) = len(widths), shape[:2]
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=widths,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=384,
        attention_head_dim=8,
        norm_num_groups=8,
    )


class CaptionBank:
    """Every distinct caption (and "") encoded once with MiniLM; all-padding columns dropped."""

    def __init__(self, captions: list[str]):
        from rill.conditioning.text import HFTextEncoder

        enc = HFTextEncoder("minilm")
        self.encoder = enc
        self.unique = sorted(set(captions) | {""})
        self.index = {c: i for i, c in enumerate(self.unique)}
        cond = enc.encode(self.unique)
        length = int(cond["mask"].any(0).nonzero().max()) + 1
        self.cond = {
            "tokens": cond["tokens"][:, :length],
            "mask": cond["mask"][:, :length],
            "pooled": cond["pooled"],
        }

    def lookup(self, captions: list[str], drop: Tensor) -> dict[str, Tensor]:
        ids = torch.tensor([self.index[c] for c in captions])
        ids = torch.where(drop, self.index[""], ids)  # caption dropout -> the unconditional embedding
        return {k: v[ids] for k, v in self.cond.items()}


class PeerModel(nn.Module):
    """The diffusers ε-UNet seen through rill's σ contract, with what rill.generate needs."""

    def __init__(self, unet: nn.Module, encoder, guidance: float = 3.0, shape=(1, 8, 8), dataset="digits"):
        super().__init__()
        self.unet, self.encoder = unet, encoder
        self.schedule = VPSchedule.make("linear", 1000)  # = DDPMScheduler(beta_schedule="linear") defaults
        sig = self.schedule.sigmas
        self.config = SimpleNamespace(
            shape=shape,
            sigma_min=float(sig[0]),
            sigma_max=float(sig[-1]),
            guidance=guidance,
            dataset=dataset,
        )
        object.__setattr__(self, "_den", VPAdapter(self._eps, self.schedule, "epsilon"))

    def _eps(self, x_vp: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        return self.unet(
            x_vp, t, encoder_hidden_states=cond["tokens"], encoder_attention_mask=cond["mask"]
        ).sample

    def denoiser(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        return self._den(x, sigma, cond)

    def encode(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.encoder.encode(list(prompts))


def peer_stepper(
    bank: CaptionBank,
    images: Tensor,
    captions: list[str],
    batch_size: int,
    lr: float,
    warmup: int,
    seed: int,
    widths: tuple[int, ...] = (24, 48),
):
    """One diffusers-style ε-prediction training step per call; `finish()` returns the EMA UNet."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(seed)
    unet = peer_unet(tuple(images.shape[1:]), widths).train()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
    g = torch.Generator().manual_seed(seed)
    state = {"step": 0, "loss": []}

    def step(elapsed: float = 0.0) -> None:
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        x0 = images[idx]
        cond = bank.lookup([captions[i] for i in idx.tolist()], torch.rand(batch_size, generator=g) < 0.1)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        noisy = sched.add_noise(x0, noise, t)
        pred = unet(
            noisy, t, encoder_hidden_states=cond["tokens"], encoder_attention_mask=cond["mask"]
        ).sample
        # ε-prediction loss, Ho et al. 2020, Eq. 14 (the "simple" objective)
        loss = F.mse_loss(pred, noise)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (state["step"] + 1) / warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        state["step"] += 1
        state["loss"].append(loss.item())

    def finish() -> tuple[nn.Module, dict]:
        ema.copy_to(unet.parameters())
        last = state["loss"][-50:]
        return unet.eval().requires_grad_(False), {
            "steps": state["step"],
            "images": state["step"] * batch_size,
            "final_loss": sum(last) / max(1, len(last)),
            "params": sum(p.numel() for p in unet.parameters()),
        }

    return step, finish


def rill_stepper(
    bank: CaptionBank,
    images: Tensor,
    captions: list[str],
    minutes: float,
    seed: int,
    batch_size: int | None,
    preset: str = "digits",
):
    """rill's `preset` recipe, one step per call: the preset's TrainConfig (its batch size unless given) with
    `minutes` as the budget, through the calls rill.train makes (DiffusionModel.loss = EDM loss, AdamW, the
    schedule via rill.train.lr_factor with the seconds this side has used, grad clipping, rill.ema.EMA)."""
    from rill.model import DiffusionModel
    from rill.train import lr_factor, train_preset
    from rill.train.augment import add_augment_label, augment_batch
    from rill.train.ema import EMA

    cfg = train_preset(preset, seed=seed, minutes=minutes, steps=None,
                       **({"batch_size": batch_size} if batch_size else {}))  # fmt: skip
    add_augment_label(cfg)
    batch_size = cfg.batch_size
    torch.manual_seed(seed)
    model = DiffusionModel(cfg.model, text_encoder=bank.encoder).train()
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(
        model.net,
        cfg.ema_decay,
        None if cfg.ema_decay is not None else cfg.ema_halflife_images,
        cfg.ema_rampup,
    )
    g = torch.Generator().manual_seed(seed + 1)
    state = {"step": 0, "loss": []}

    def step(elapsed: float) -> None:
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        cond = bank.lookup(
            [captions[i] for i in idx.tolist()], torch.rand(batch_size, generator=g) < cfg.caption_dropout
        )
        x0, cond = augment_batch(images[idx], cond, cfg, g)  # as rill.train does
        loss = model.loss(
            x0,
            cond,
            generator=g,
            p_mean=cfg.p_mean,
            p_std=cfg.p_std,
            min_snr_gamma=cfg.min_snr_gamma,
        ).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.net.parameters(), cfg.grad_clip)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(state["step"], cfg, elapsed)
        opt.step()
        state["step"] += 1
        ema.update(model.net, batch_size, state["step"] * batch_size)
        state["loss"].append(loss.item())

    def finish() -> tuple[nn.Module, dict]:
        model.net.load_state_dict(ema.state_dict())
        last = state["loss"][-50:]
        return model.eval().requires_grad_(False), {
            "steps": state["step"],
            "images": state["step"] * batch_size,
            "batch": batch_size,
            "recipe": {
                k: getattr(cfg, k)
                for k in (
                    "lr",
                    "lr_schedule",
                    "cooldown_fraction",
                    "warmup_steps",
                    "ema_halflife_images",
                    "ema_rampup",
                    "p_mean",
                    "p_std",
                    "augment_p",
                )
            },
            "final_loss": sum(last) / max(1, len(last)),
            "params": sum(p.numel() for p in model.net.parameters()),
        }

    return step, finish


def train_split(dataset: str) -> tuple[Tensor, list[str]]:
    """(images (N, C, H, W) in [-1, 1], captions) of the dataset's "train" split, all in memory."""
    from rill.data import load_dataset

    data = load_dataset(dataset, split="train")
    if hasattr(data, "images"):
        return data.images.float(), list(data.captions)
    return torch.stack([data[i][0] for i in range(len(data))]).float(), list(data.captions)


def train_interleaved(
    minutes: float, batch_size: int, lr: float, seed: int, rill_batch: int | None, dataset: str = "digits"
) -> dict:
    """Both recipes in one loop: each call runs one step of whichever model has used less of its wall-clock
    budget, so load from other processes on a shared machine falls on both alike."""
    images, captions = train_split(dataset)
    bank = CaptionBank(captions)
    sides = {
        "rill": rill_stepper(bank, images, captions, minutes, seed, rill_batch, dataset),
        "diffusers": peer_stepper(
            bank, images, captions, batch_size, lr, 200, seed, SETUPS[dataset]["widths"]
        ),
    }
    used = dict.fromkeys(sides, 0.0)
    budget = 60 * minutes
    while min(used.values()) < budget:
        name = min(used, key=used.get)
        t0 = time.perf_counter()
        sides[name][0](used[name])
        used[name] += time.perf_counter() - t0
    out = {}
    for name, (_, finish) in sides.items():
        model, stats = finish()
        out[name] = (model, {**stats, "seconds": round(used[name], 1)})
    out["encoder"] = bank.encoder
    return out


# fmt: off
def train_sequential(minutes: float, batch_size: int, lr: float, work: Path, threads: int) -> dict:
    """`rill.train` with the digits preset for `minutes` of wall clock, then the peer for as long."""
    from rill.data import load_dataset
    from rill.model import load_model
    from rill.train import train, train_preset

    cfg = train_preset("digits", minutes=minutes, steps=None,
                       out_dir=str(work / "rill"), data_kwargs={"split": "train"}, sample_every=0,
                       checkpoint_every=0, num_threads=threads)
    model = load_model(train(cfg, progress=False))
    info = getattr(model, "info", {}) or {}
    rill_stats = {"steps": info.get("step"), "images": info.get("images_seen"),
                  "seconds": info.get("wall_time"), "params": sum(p.numel() for p in model.net.parameters())}
    data = load_dataset("digits", split="train")
    bank = CaptionBank(list(data.captions))
    step, finish = peer_stepper(bank, data.images.float(), list(data.captions), batch_size, lr, 200, 0)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 60 * minutes:
        step()
    unet, peer_stats = finish()
    peer_stats["seconds"] = round(time.perf_counter() - t0, 1)
    return {"rill": (model, rill_stats), "diffusers": (unet, peer_stats), "encoder": bank.encoder}
# fmt: on


def write_markdown(res: dict, path: Path) -> None:
    r, p = res["rill"], res["diffusers"]
    data = res.get("data", "digits")
    setup = SETUPS[data]
    lines = [
        "# rill vs diffusers: same data, same text embeddings, same wall clock",
        "",
        f"Written by `python benchmarks/train_vs_diffusers.py --minutes {res['minutes']} "
        + (f"--data {data} " if data != "digits" else "")
        + (f"--seed {res['seed']} " if res.get("seed") else "")
        + f"--mode {res['mode']}` on {res['machine']}. "
        f"Each model trained for {res['minutes']} min of wall clock on {setup['about']} "
        f"(batch: rill {r.get('batch', res['batch_size'])}, diffusers {res['batch_size']}; {res['threads']} "
        "threads), "
        + (
            "interleaved step by step in one loop, so other processes' load falls on both alike. "
            if res["mode"] == "interleaved"
            else "one after the other in one process. "
        )
        + f"rill's recipe: the `{data}` preset (EDM loss and preconditioning, AdamW, half-life EMA"
        + (f"; {json.dumps(r['recipe'])}" if "recipe" in r else "")
        + "), its schedule laid out over the seconds its side has used. "
        f"Peer: ε-prediction on DDPMScheduler's linear schedule, AdamW lr {res['lr']}, diffusers EMAModel. "
        f"Evaluation: {res['n']} images per prompt for {setup['prompts']}, sampler "
        f"`{res['sampler']}` at NFE {res['nfe']} for both, rill's feature CNN for FD / precision / recall, "
        f"{setup['judge']}.",
        "",
        "| | parameters | steps | images seen | train s |",
        "|---|---:|---:|---:|---:|",
        f"| rill (EDM, `{data}` preset) | {r['params']:,} | {r['steps']} | {r['images']} | {r['seconds']} |",
        f"| diffusers UNet2DConditionModel + DDPMScheduler (ε) | {p['params']:,} | {p['steps']} | "
        f"{p['images']} | {p['seconds']} |",
        "",
        "| guidance | model | FD (lower is better) | precision | recall | adherence | diversity | clipped |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g, row in res["evals"].items():
        for name in ("rill", "diffusers"):
            e = row[name]
            lines.append(
                f"| {g} | {name} | {e['fd']:.2f} | {e['precision']:.3f} | {e['recall']:.3f} | "
                f"{100 * e['adherence']:.1f}% | {e['diversity']:.2f} | {100 * e['clipped']:.1f}% |"
            )
    floor = next(iter(res["evals"].values()))["rill"]["fd_real_floor"]
    lines += [
        "",
        f"Real vs real FD ({setup['floor']}): {floor:.2f}. "
        f"FD ratio diffusers / rill: "
        + ", ".join(f"w={g}: {row['ratio']:.2f}x" for g, row in res["evals"].items())
        + f". Target: >= 1.5x. Load average during the run: {res['load']}.",
        "",
    ]
    from rill.eval.guidance import choose_setting

    evals = res["evals"]
    w_r, w_d = (choose_setting({g: row[name] for g, row in evals.items()}) for name in ("rill", "diffusers"))
    fd_r, fd_d = evals[w_r]["rill"]["fd"], evals[w_d]["diffusers"]["fd"]
    lines += [
        "Each at its best evaluated guidance (the lowest FD among the settings whose adherence reaches "
        "min(98%, its best − 2%): rill.eval.guidance's rule; w@lo-hi = guidance only for σ in [lo, hi]): "
        f"rill FD {fd_r:.2f} (w={w_r}), diffusers {fd_d:.2f} (w={w_d}): "
        f"ratio {fd_d / fd_r:.2f}x (target >= 1.5x, i.e. rill's FD <= 0.67x the peer's); rill's "
        f"adherence there: {100 * res['evals'][w_r]['rill']['adherence']:.1f}% (target 98%), the peer's "
        f"{100 * res['evals'][w_d]['diffusers']['adherence']:.1f}%.",
        "",
    ]
    if "denoise_error" in res:
        from benchmarks.digits_overfit import denoise_table

        lines += denoise_table(res["denoise_error"])
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    # fmt: off
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=sorted(SETUPS), default="digits", help="dataset (and rill preset)")
    ap.add_argument("--minutes", type=float, default=4.0, help="wall-clock training budget per model")
    ap.add_argument("--batch-size", type=int, default=128, help="the peer's batch size")
    ap.add_argument("--rill-batch", type=int, default=None, help="rill's batch size (default: its preset's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="training seed of both (evaluation seeds stay 0..)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peer learning rate (rill's preset: 2e-3 too)")
    ap.add_argument("--n", type=int, default=None, help="images per prompt (50 digits, 16 shapes)")
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--guidance", default="1,1.5,2,3,1.5@0-1,2@0-0.5,3@0-0.5",
                    help="comma-separated CFG scales to evaluate; w@lo-hi: guidance only for σ in [lo, hi]")
    ap.add_argument("--mode", choices=("interleaved", "sequential"), default="interleaved",
                    help="interleaved: one loop alternating steps, fair under a shared CPU (default); "
                    "sequential: rill.train then the peer, each for --minutes of wall clock")
    ap.add_argument("--work", default="/tmp/rill-peer", help="scratch folder for rill.train (sequential)")
    ap.add_argument("--out", default=str(RESULTS / "train_vs_diffusers.md"))
    ap.add_argument("--rewrite", action="store_true", help="only re-render the .md from a past run's .json")
    # fmt: on
    args = ap.parse_args(argv)
    if args.rewrite:
        out = Path(args.out)
        write_markdown(json.loads(out.with_suffix(".json").read_text()), out)
        print(out.read_text())
        return 0
    args.n = args.n or SETUPS[args.data]["n"]
    if args.mode == "sequential" and args.data != "digits":
        ap.error("--mode sequential trains the digits preset only; use --mode interleaved")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rill.eval import evaluate_model
    from rill.eval.guidance import parse_setting

    print(f"training rill and the diffusers peer ({args.mode}), {args.minutes} min each ...", flush=True)
    if args.mode == "interleaved":
        trained = train_interleaved(
            args.minutes, args.batch_size, args.lr, args.seed, args.rill_batch, args.data
        )
    else:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        trained = train_sequential(args.minutes, args.batch_size, args.lr, Path(args.work), args.threads)
    (rill_model, rill_stats), (unet, peer_stats) = trained["rill"], trained["diffusers"]
    peer = PeerModel(unet, trained["encoder"], shape=SETUPS[args.data]["shape"], dataset=args.data)
    print(
        f"  rill {rill_stats['steps']} steps, diffusers {peer_stats['steps']} steps; evaluating ...",
        flush=True,
    )
    keys = ("fd", "fd_real_floor", "precision", "recall", "adherence", "diversity", "clipped", "saturation")
    evals = {}
    for g in (s.strip() for s in args.guidance.split(",")):
        w, span = parse_setting(g)  # "2" or "2@0-0.5": w = 2, only for σ in [0, 0.5]
        kw = dict(guidance=w, guidance_interval=span or (0.0, math.inf), seed=0, log=False)
        row = {}
        for name, model in (("rill", rill_model), ("diffusers", peer)):
            r = evaluate_model(model, args.data, n=args.n, nfe=args.nfe, sampler=args.sampler, **kw)
            row[name] = {k: r[k] for k in keys}
            print(f"  w={g} {name}: FD {r['fd']:.2f} adherence {r['adherence']:.3f}", flush=True)
        row["ratio"] = row["diffusers"]["fd"] / max(row["rill"]["fd"], 1e-12)
        evals[g] = row
    args_used = ("data", "mode", "lr", "minutes", "batch_size", "threads", "n", "nfe", "sampler", "seed")
    res = {k: getattr(args, k) for k in args_used}
    if args.data == "digits":  # generalisation without sampling noise (benchmarks/digits_overfit.py)
        from benchmarks.digits_overfit import denoise_errors

        res["denoise_error"] = denoise_errors({"rill": rill_model, "diffusers": peer})
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    res.update(machine=f"{os.cpu_count()} CPU cores (shared)", load=load, rill=rill_stats,
               diffusers=peer_stats, evals=evals)  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_markdown(res, out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
