"""Which solver auto should use with guidance: RMS endpoint error and adherence per NFE on trained nets.

    python -m benchmarks.auto_guided MODEL GUIDANCE SIGMA_MAXES CONFIGS [NFES] [MODEL_FILE]
    python -m benchmarks.auto_guided shapes 3 80,14.6 unipc:3:bh1:rill-nets,unipc:2:bh2:rill-nets
    python -m benchmarks.auto_guided digits 3 80 unipc:2:bh2:rill-nets 4,5,6,8 runs/digits/model.safetensors

CONFIGS: comma-separated sampler:order:variant:grid (empty fields = the sampler's default). Same cases,
reference (DPM-Solver++(3M) 200 calls from the same σ_max, with its 100-call check) and adherence judges as
benchmarks/samplers_nets.py (TEST_PROMPTS / TEST_SEEDS). References are cached in /tmp/rill-auto-guided/.
Prints one line per (σ_max, config); benchmarks/results/auto_guided.md collects the runs.
"""

from __future__ import annotations

import os
import sys

import torch

from benchmarks.samplers_nets import (
    TEST_PROMPTS,
    TEST_SEEDS,
    Case,
    _judge,
    adherence,
    load_models,
    rms,
    run_rill,
)

CACHE = "/tmp/rill-auto-guided"


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    name, w = argv[0], float(argv[1])
    smaxes = [float(s) for s in argv[2].split(",")]
    configs = [c.split(":") for c in argv[3].split(",")]
    nfes = [int(v) for v in (argv[4] if len(argv) > 4 else "4,5,6,8,10,12,16,25").split(",")]
    path = argv[5] if len(argv) > 5 else None
    model = load_models([name], {name: path} if path else {})[name]
    judge = _judge(name)
    case = Case(model, name, w, TEST_PROMPTS[name], TEST_SEEDS[name])
    tag = os.path.basename(path or name)
    os.makedirs(CACHE, exist_ok=True)
    for smax in smaxes:
        f = f"{CACHE}/ref_{tag}_{w}_{smax}.safetensors"
        if os.path.exists(f):
            from safetensors.torch import load_file

            case._refs[smax] = load_file(f)["ref"]
        else:
            from safetensors.torch import save_file

            save_file({"ref": case.reference(smax).contiguous()}, f)
            print("reference check (RMS 200 vs 100 calls):", case.ref_check, flush=True)
        for sampler, order, variant, grid in configs:
            opts = {**({"order": int(order)} if order else {}), **({"variant": variant} if variant else {})}
            errs, adh = [], []
            for n in nfes:
                x = run_rill(case, sampler, opts, grid, n, sigma_max=smax)
                errs.append(rms(x, case._refs[smax]))
                adh.append(adherence(case, x.clamp(-1, 1), judge))
            print(f"{tag} w{w:g} σ_max {smax:g} {sampler}{order}{variant} {grid}: RMS "
                  + " ".join(f"{e:.3f}" for e in errs) + " | adherence " + " ".join(f"{a:.2f}" for a in adh),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
