"""Samplers on trained networks: rill's default against diffusers' schedulers, on the bundled models.

    python -m benchmarks.samplers_nets                # writes benchmarks/results/samplers_nets.{md,json}
    python -m benchmarks.samplers_nets --models digits --guidance 3 --nfes 5,10

For each model, guidance w and NFE (denoiser calls of the guided denoiser; one CFG call counts once), from the
same per-sample noise, the RMS endpoint error in pixels (images clamped to [-1, 1]) against a converged
reference of the SAME guided probability-flow ODE: DPM-Solver++(3M) on a Karras grid, 200 calls, from the
σ_max that run starts at (80 for rill's σ range, ≈ 14.6 for diffusers' shipped Stable Diffusion table). The
reference's own error (200 vs 100 calls) is printed with each table. (Until session 6 it was Heun with 299
calls, whose own error on the shapes model at guidance 1 was 0.031 px, as large as the errors it judged.)
Also the prompt adherence of the same images (digits: the digit judge of rill.eval; shapes: every attribute
of every object right, by the shapes checker; emoji: the prompted subject recognised by rill eval emoji's
classifier).

Peers run through benchmarks/_peer.py (the real diffusers schedulers, rill's model evaluated at the σ each
scheduler uses):
- "own defaults": the scheduler as shipped, on Stable Diffusion's scaled-linear β table (0.00085, 0.012) —
  what a diffusers user gets; "DPM++ 2M Karras" = DPMSolverMultistepScheduler(use_karras_sigmas=True).
- "σ-matched": the same schedulers on a VP table whose σ spans rill's [0.002, 80] (Karras spacing).
Prompts and seeds here are the benchmark's own (TEST_*); benchmarks/design_samplers_nets.py designs on
others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from benchmarks._models import add_checkpoint_flag, checkpoint_paths
from benchmarks._peer import make_scheduler, peer_config, peer_steps, run_scheduler, scheduler_grid

RESULTS = Path(__file__).resolve().parent / "results"
NFES = [4, 5, 6, 8, 10, 12, 16, 25]
SD_TABLE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}

# prompts and noise seeds of the benchmark (the design script uses DESIGN_*, disjoint from these)
TEST_PROMPTS = {
    "digits": [f"a handwritten digit {d}" for d in range(10)],
    "shapes": [
        "a large red circle in the center",
        "a small blue square in the top left",
        "a large white triangle in the bottom right",
        "a large blue circle to the left of a small red square",
        "a small white square above a large green circle",
        "a large yellow circle in the bottom left",
        "a large purple square to the left of a small white circle",
        "a small green triangle above a large red square",
    ],
    "emoji": [
        "an emoji of cat face",
        "an emoji of red apple",
        "an emoji of rocket",
        "an emoji of waving hand, medium-dark skin tone",
        "an emoji of thumbs up, medium skin tone",
        "an emoji of smiling face with heart-eyes",
        "an emoji of ghost",
        "an emoji of woman surfing, dark skin tone",
    ],
}
TEST_SEEDS = {"digits": range(1000, 1003), "shapes": range(1000, 1002), "emoji": range(1000, 1002)}
REF_NFE, REF_CHECK_NFE, REF_SAMPLER = 200, 100, "dpmpp_3m"  # the reference, and the run that checks it

RILL = [  # (label, sampler, options, grid) on rill's σ range [0.002, 80]
    ("rill default (auto)", "auto", {}, None),  # with the model's tuned plans, as generate() runs it
    ("rill auto, untuned", "auto", {"tuned": False}, None),  # auto's own table only
    ("rill DPM++ 2M Karras", "dpmpp_2m", {}, "karras"),
    ("rill UniPC-3 Karras", "unipc", {"order": 3}, "karras"),
]
PEERS_DEFAULT = [  # (label, _peer kind, config) on diffusers' shipped SD table
    ("diffusers DPM++ 2M (default)", "dpmpp", {}),
    ("diffusers DPM++ 2M Karras", "dpmpp", {"use_karras_sigmas": True}),
    ("diffusers UniPC (default)", "unipc", {}),
    ("diffusers Euler (default)", "euler", {}),
]
PEERS_MATCHED = [  # on a VP table spanning [0.002, 80], Karras spacing
    ("diffusers DPM++ 2M Karras, σ-matched", "dpmpp", {"use_karras_sigmas": True}),
    ("diffusers UniPC Karras, σ-matched", "unipc", {"use_karras_sigmas": True}),
]


def load_models(spec: list[str], paths: dict[str, str]) -> dict:
    """Bundled models (sharing one text encoder) or --checkpoint files."""
    from rill.model import bundled_model, load_model

    models, enc = {}, None
    for name in spec:
        m = (
            load_model(paths[name], text_encoder=enc)
            if name in paths
            else bundled_model(name, text_encoder=enc)
        )
        enc = enc or m.load_text_encoder()
        models[name] = m
    return models


class Case:
    """One (model, guidance, prompts × seeds) problem: the guided denoiser, its noise, cached references."""

    def __init__(self, model, dataset: str, w: float, prompts: list[str], seeds) -> None:
        from rill.inference.generate import guided_denoiser

        self.model, self.dataset, self.w = model, dataset, w
        self.prompts = [p for p in prompts for _ in seeds]
        shape = tuple(model.config.shape)
        gens = [torch.Generator().manual_seed(s) for _ in prompts for s in seeds]
        self.z = torch.stack([torch.randn(shape, generator=g) for g in gens])  # (B, C, H, W) unit noise
        # guidance at every σ, whatever guidance interval the model file recommends: the tables' definition
        guided, cond = guided_denoiser(model, self.prompts, "", w, model.device, (0.0, math.inf))
        self.calls = 0

        def denoiser(x: Tensor, sigma: Tensor, c=None) -> Tensor:
            self.calls += 1
            return guided(x, sigma, cond)

        self.denoiser = denoiser
        self._refs: dict[float, Tensor] = {}
        self.ref_check: dict[float, float] = {}

    @torch.no_grad()
    def reference(self, sigma_max: float) -> Tensor:
        """The converged endpoint of the guided PF-ODE from sigma_max (REF_SAMPLER, Karras, REF_NFE calls)."""
        import rill

        key = float(sigma_max)
        if key not in self._refs:
            run = lambda nfe: rill.sample(  # noqa: E731
                self.denoiser,
                self.z,
                nfe=nfe,
                sampler=REF_SAMPLER,
                grid="karras",
                sigma_min=0.002,
                sigma_max=key,
            )
            self._refs[key] = run(REF_NFE)
            self.ref_check[key] = rms(run(REF_CHECK_NFE), self._refs[key])
        return self._refs[key]


def rms(x: Tensor, ref: Tensor) -> float:
    """RMS pixel error of images clamped to [-1, 1] (the measure rill tune-sampler minimises)."""
    from rill.inference.tune import rms_error

    return rms_error(x, ref)


@torch.no_grad()
def run_rill(case: Case, sampler: str, options: dict, grid, nfe: int, sigma_max: float = 80.0) -> Tensor:
    import rill
    from rill.inference.plans import plan_for

    # "auto" as generate() runs it: the model's tuned plan for this budget and guidance, if it has one
    options = dict(options)
    tuned = options.pop("tuned", True) and sampler == "auto"
    plan = plan_for(case.model, sampler, nfe, case.w, 0.002, sigma_max, None) if tuned else None
    if plan is not None:
        sampler, options = plan["sampler"], plan["options"]
        grid = torch.tensor(plan["sigmas"], dtype=torch.float64)
    case.calls = 0
    x = rill.sample(case.denoiser, case.z, nfe=nfe, sampler=sampler, grid=grid, sigma_max=sigma_max,
                    guided=case.w != 1, **options)  # fmt: skip
    assert case.calls <= nfe, (sampler, nfe, case.calls)
    return x


@torch.no_grad()
def run_peer(case: Case, kind: str, config: dict, nfe: int) -> tuple[Tensor, float]:
    sched = make_scheduler(kind, peer_steps(kind, nfe), **config)
    sigma0 = float(scheduler_grid(sched, kind)[0])
    case.calls = 0
    x, calls = run_scheduler(sched, kind, case.denoiser, case.z * sigma0)
    assert calls <= nfe, (kind, nfe, calls)
    return x, sigma0


def adherence(case: Case, images: Tensor, judge) -> float:
    """Share of images that show what their prompt asks (see the module docstring)."""
    if case.dataset == "digits":
        from rill.eval.adherence import digit_adherence

        return float(digit_adherence(images, case.prompts, judge)["accuracy"])
    if case.dataset == "emoji":  # the prompted emoji's subject recognised (rill eval emoji's judge)
        subject_judge, entry_of = judge
        want = subject_judge.labels[torch.tensor([entry_of[p] for p in case.prompts])]
        return float((subject_judge.predict(images) == want).float().mean())
    from rill.eval.adherence import shapes_adherence

    return float(shapes_adherence(images, case.prompts)["all"]["correct"])  # every attribute right


def evaluate(case: Case, nfes: list[int], judge, rows_rill=RILL, log: Callable = print) -> list[dict]:
    rows = []

    def add(label: str, family: str, nfe: int, x: Tensor, sigma_max: float) -> None:
        err = rms(x, case.reference(sigma_max))
        rows.append(dict(label=label, family=family, nfe=nfe, rms=err, sigma_max=sigma_max,
                         adherence=adherence(case, x.clamp(-1, 1), judge)))  # fmt: skip

    for label, sampler, options, grid in rows_rill:
        for nfe in nfes:
            add(label, "rill", nfe, run_rill(case, sampler, options, grid, nfe), 80.0)
        log(f"  {label}: " + " ".join(f"{r['rms']:.3f}" for r in rows if r["label"] == label))
    for group, peers, table in (
        ("default", PEERS_DEFAULT, lambda kind: dict(SD_TABLE)),
        ("matched", PEERS_MATCHED, lambda kind: peer_config(kind, {})),
    ):
        for label, kind, config in peers:
            for nfe in nfes:
                x, sigma0 = run_peer(case, kind, {**table(kind), **config}, nfe)
                add(label, f"peer-{group}", nfe, x, sigma0)
            log(f"  {label}: " + " ".join(f"{r['rms']:.3f}" for r in rows if r["label"] == label))
    return rows


def _judge(dataset: str):
    if dataset == "emoji":  # (the subject classifier, prompt -> entry index)
        from rill.eval.emoji_check import real_emoji, subject_judge
        from rill.eval.emoji_eval import emoji_prompt

        entries = real_emoji()[1]
        return subject_judge(log=False), {emoji_prompt(e): i for i, e in reversed(list(enumerate(entries)))}
    if dataset != "digits":
        return None
    from rill.eval.adherence import DigitJudge

    return DigitJudge()


def table(rows: list[dict], nfes: list[int], key: str, fmt: str) -> list[str]:
    labels = list(dict.fromkeys(r["label"] for r in rows))
    out = ["| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---:|" * len(nfes)]
    for label in labels:
        vals = {r["nfe"]: r[key] for r in rows if r["label"] == label}
        out.append(
            f"| {label} | " + " | ".join(format(vals[n], fmt) if n in vals else "" for n in nfes) + " |"
        )
    return out


def ratio_line(rows: list[dict], nfes: list[int]) -> str:
    """rill default / best peer at their own defaults, per NFE."""
    parts = []
    for n in nfes:
        mine = [r["rms"] for r in rows if r["nfe"] == n and r["label"] == RILL[0][0]]
        peers = [r["rms"] for r in rows if r["nfe"] == n and r["family"] == "peer-default"]
        if mine and peers:
            parts.append(f"{n}: {mine[0] / min(peers):.2f}×")
    return "rill default ÷ best peer at its own defaults — " + ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,shapes")
    ap.add_argument("--guidance", default="1,3", help="guidance scales (1 = none)")
    ap.add_argument("--nfes", default=",".join(map(str, NFES)))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "samplers_nets"))
    add_checkpoint_flag(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    nfes = [int(v) for v in args.nfes.split(",")]
    names = args.models.split(",")
    t0 = time.perf_counter()
    models = load_models(names, checkpoint_paths(args))
    results = []
    lines = [
        "# Samplers on trained networks",
        "",
        f"`python -m benchmarks.samplers_nets --models {args.models} --guidance {args.guidance}` "
        f"({datetime.date.today()}, {platform.machine()}, {args.threads} thread(s)).",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
    ]
    for name in names:
        model = models[name]
        dataset = str(model.config.dataset or name).split(":")[0]
        judge = _judge(dataset)
        for w in [float(v) for v in args.guidance.split(",")]:
            case = Case(model, dataset, w, TEST_PROMPTS[dataset], TEST_SEEDS[dataset])
            print(f"{name}, guidance {w:g}: {len(case.prompts)} samples")
            rows = evaluate(case, nfes, judge)
            results.append(dict(model=name, guidance=w, rows=rows, reference_check=case.ref_check))
            checks = ", ".join(f"σ_max {k:.3g}: {v:.5f}" for k, v in case.ref_check.items())
            head = f"RMS endpoint error in pixels (reference {REF_NFE} vs {REF_CHECK_NFE} calls: {checks})."
            lines += [f"## {name}, guidance {w:g} ({len(case.prompts)} samples)", "", head,
                      "", *table(rows, nfes, "rms", ".3f"), "", ratio_line(rows, nfes), "",
                      "Prompt adherence of the same images:", "", *table(rows, nfes, "adherence", ".2f"),
                      ""]  # fmt: skip
    lines.append(f"Wall time {time.perf_counter() - t0:.0f} s.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
