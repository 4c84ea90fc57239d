"""Peer baseline: rill's digits recipe vs a diffusers UNet2DConditionModel + DDPMScheduler, same data, same text
embeddings, same wall-clock budget on the same machine, evaluated with the same metrics at equal NFE.

    python benchmarks/train_vs_diffusers.py --minutes 4          # -> benchmarks/results/train_vs_diffusers.{md,json}

Peer recipe (diffusers' text-to-image training loop, sized down): ε-prediction MSE (Ho et al. 2020, Eq. 14) on
DDPMScheduler's linear β schedule (1e-4 … 0.02, 1000 steps), t ~ U{0..999}, AdamW, linear warm-up then constant
lr, grad clipping 1.0, 10% caption dropout (for CFG), EMA with diffusers' EMAModel (decay 0.9999, warm-up
power 2/3, the setting its docstring recommends for short runs). UNet2DConditionModel(block_out_channels=(24, 48),
cross-attention to the same MiniLM token embeddings, cross_attention_dim=384), ~0.69M parameters vs rill's
~0.72M. rill: `rill.train` with the "digits" preset (EDM preconditioning and loss, EMA by half-life).
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

from rill.denoisers import VPAdapter  # noqa: E402
from rill.schedules import VPSchedule  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def peer_unet(sample_size: int = 8, channels: int = 1, widths: tuple[int, ...] = (24, 48)) -> nn.Module:
    from diffusers import UNet2DConditionModel

    n = len(widths)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=channels, out_channels=channels, block_out_channels=widths,
        layers_per_block=1, down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",), cross_attention_dim=384,
        attention_head_dim=8, norm_num_groups=8,
    )


class CaptionBank:
    """Every distinct caption (and "") encoded once with MiniLM; all-padding columns dropped."""

    def __init__(self, captions: list[str]):
        from rill.text import HFTextEncoder

        enc = HFTextEncoder("minilm")
        self.encoder = enc
        self.unique = sorted(set(captions) | {""})
        self.index = {c: i for i, c in enumerate(self.unique)}
        cond = enc.encode(self.unique)
        length = int(cond["mask"].any(0).nonzero().max()) + 1
        self.tokens, self.mask = cond["tokens"][:, :length], cond["mask"][:, :length]

    def lookup(self, captions: list[str], drop: Tensor) -> tuple[Tensor, Tensor]:
        ids = torch.tensor([self.index[c] for c in captions])
        ids = torch.where(drop, self.index[""], ids)
        return self.tokens[ids], self.mask[ids]


class PeerModel(nn.Module):
    """The diffusers ε-UNet seen through rill's σ contract, with what rill.generate needs."""

    def __init__(self, unet: nn.Module, encoder, guidance: float = 3.0, shape=(1, 8, 8)):
        super().__init__()
        self.unet, self.encoder = unet, encoder
        self.schedule = VPSchedule.make("linear", 1000)  # = DDPMScheduler(beta_schedule="linear") defaults
        sig = self.schedule.sigmas
        self.config = SimpleNamespace(shape=shape, sigma_min=float(sig[0]), sigma_max=float(sig[-1]),
                                      guidance=guidance, dataset="digits")
        object.__setattr__(self, "_den", VPAdapter(self._eps, self.schedule, "epsilon"))

    def _eps(self, x_vp: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        return self.unet(x_vp, t, encoder_hidden_states=cond["tokens"], encoder_attention_mask=cond["mask"]).sample

    def denoiser(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        return self._den(x, sigma, cond)

    def encode(self, prompts: list[str]) -> dict[str, Tensor]:
        return self.encoder.encode(list(prompts))


def train_peer(minutes: float, batch_size: int, lr: float, warmup: int, seed: int) -> tuple[nn.Module, dict]:
    """diffusers-style ε-prediction training for `minutes` of wall clock; returns the EMA UNet and stats."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from rill.data import load_dataset

    torch.manual_seed(seed)
    data = load_dataset("digits", split="train")
    images, captions = data.images.float(), list(data.captions)
    bank = CaptionBank(captions)
    unet = peer_unet()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
    g = torch.Generator().manual_seed(seed)
    start, step, losses = time.time(), 0, []
    unet.train()
    while time.time() - start < minutes * 60:
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        x0 = images[idx]
        tokens, mask = bank.lookup([captions[i] for i in idx.tolist()], torch.rand(batch_size, generator=g) < 0.1)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        noisy = sched.add_noise(x0, noise, t)
        # ε-prediction loss, Ho et al. 2020, Eq. 14 (the "simple" objective)
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=tokens, encoder_attention_mask=mask).sample, noise)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        losses.append(loss.item())
        step += 1
    seconds = time.time() - start
    ema.copy_to(unet.parameters())
    stats = {"steps": step, "images": step * batch_size, "seconds": round(seconds, 1),
             "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
             "params": sum(p.numel() for p in unet.parameters())}
    return unet.eval().requires_grad_(False), {**stats, "encoder": bank.encoder}


def train_rill(minutes: float, batch_size: int, work: Path, threads: int) -> tuple[nn.Module, dict]:
    from rill.config import train_preset
    from rill.model import load_model
    from rill.train import train

    cfg = train_preset("digits", minutes=minutes, steps=10**8, batch_size=batch_size, out_dir=str(work / "rill"),
                       data_kwargs={"split": "train"}, sample_every=0, checkpoint_every=0, num_threads=threads)
    t0 = time.time()
    path = train(cfg, progress=False)
    seconds = time.time() - t0
    model = load_model(path)
    info = getattr(model, "info", {}) or {}
    steps = info.get("step") or info.get("steps")
    return model, {"steps": steps, "images": info.get("images_seen", (steps or 0) * batch_size),
                   "seconds": round(seconds, 1), "params": sum(p.numel() for p in model.net.parameters()),
                   "info": info}


def write_markdown(res: dict, path: Path) -> None:
    r, p = res["rill"], res["diffusers"]
    lines = [
        "# rill vs diffusers: same data, same text embeddings, same wall clock",
        "",
        f"Written by `python benchmarks/train_vs_diffusers.py --minutes {res['minutes']}` on {res['machine']}. "
        f"Each model trained for {res['minutes']} min of wall clock on the 1438 digits of the \"train\" split "
        f"(batch {res['batch_size']}, {res['threads']} threads), one after the other in one process. "
        f"Evaluation: {res['n']} images per prompt for the 10 prompts \"a handwritten digit k\", sampler "
        f"`{res['sampler']}` at NFE {res['nfe']} for both, rill's feature CNN for FD / precision / recall, "
        "adherence = RBF-SVM fitted only on the 359 held-out digits.",
        "",
        "| | parameters | steps | images seen | train s |",
        "|---|---:|---:|---:|---:|",
        f"| rill (EDM, `digits` preset) | {r['params']:,} | {r['steps']} | {r['images']} | {r['seconds']} |",
        f"| diffusers UNet2DConditionModel + DDPMScheduler (ε) | {p['params']:,} | {p['steps']} | {p['images']} | "
        f"{p['seconds']} |",
        "",
        "| guidance | model | FD ↓ | precision | recall | adherence | diversity | clipped |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g, row in res["evals"].items():
        for name in ("rill", "diffusers"):
            e = row[name]
            lines.append(f"| {g} | {name} | {e['fd']:.2f} | {e['precision']:.3f} | {e['recall']:.3f} | "
                         f"{100 * e['adherence']:.1f}% | {e['diversity']:.2f} | {100 * e['clipped']:.1f}% |")
    floor = next(iter(res["evals"].values()))["rill"]["fd_real_floor"]
    lines += ["", f"Real vs real FD (held-out digits vs the train split): {floor:.2f}. "
              f"FD ratio diffusers / rill: " + ", ".join(f"w={g}: {row['ratio']:.2f}x" for g, row in res["evals"].items())
              + f". Target: >= 1.5x. Load average during the run: {res['load']}.", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=4.0, help="wall-clock training budget per model")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3, help="peer learning rate (rill's preset uses 2e-3 too)")
    ap.add_argument("--n", type=int, default=50, help="images per prompt in the evaluation")
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--guidance", default="1,3", help="comma-separated CFG scales to evaluate")
    ap.add_argument("--work", default="/tmp/rill-peer", help="scratch folder for rill's run")
    ap.add_argument("--out", default=str(RESULTS / "train_vs_diffusers.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rill.evaluate import evaluate_model

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"training rill for {args.minutes} min ...", flush=True)
    rill_model, rill_stats = train_rill(args.minutes, args.batch_size, work, args.threads)
    print(f"  {rill_stats['steps']} steps; training diffusers peer for {args.minutes} min ...", flush=True)
    unet, peer_stats = train_peer(args.minutes, args.batch_size, args.lr, 200, seed=0)
    peer = PeerModel(unet, peer_stats.pop("encoder"))
    print(f"  {peer_stats['steps']} steps; evaluating ...", flush=True)
    evals = {}
    for g in (float(s) for s in args.guidance.split(",")):
        row = {}
        for name, model in (("rill", rill_model), ("diffusers", peer)):
            r = evaluate_model(model, "digits", n=args.n, nfe=args.nfe, sampler=args.sampler, guidance=g, seed=0,
                               log=False)
            row[name] = {k: r[k] for k in ("fd", "fd_real_floor", "precision", "recall", "adherence", "diversity",
                                           "clipped", "saturation")}
            print(f"  w={g} {name}: FD {r['fd']:.2f} P {r['precision']:.3f} R {r['recall']:.3f} "
                  f"adherence {r['adherence']:.3f}", flush=True)
        row["ratio"] = row["diffusers"]["fd"] / max(row["rill"]["fd"], 1e-12)
        evals[g] = row
    rill_stats.pop("info", None)
    res = {"minutes": args.minutes, "batch_size": args.batch_size, "threads": args.threads, "n": args.n,
           "nfe": args.nfe, "sampler": args.sampler, "machine": f"{os.cpu_count()} CPU cores (shared)",
           "load": " / ".join(f"{v:.1f}" for v in os.getloadavg()), "rill": rill_stats, "diffusers": peer_stats,
           "evals": evals}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_markdown(res, out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=lambda o: None if isinstance(o, float)
                                                   and not math.isfinite(o) else str(o)) + "\n")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
