"""Time to first image: process start of `rill generate "a handwritten digit 7"` -> its first PNG on disk.

    python benchmarks/first_image.py [--runs 5] [--no-write]

Each run starts a fresh `python -m rill generate ...` (defaults: the bundled digits model, -n 4, 16 NFE) into
an empty folder; the parent polls the folder every 5 ms and records when the first .png appears, when the
process exits, and the CPU seconds it used. CPU seconds are reported because the machine this was written on
is shared: wall time there depends on the other users, CPU time much less.

Then one instrumented child splits the work into stages (wall and CPU each) and measures a what-if: the same
MiniLM embeddings computed with `tokenizers` + `safetensors` + a plain-torch BERT forward (no transformers
import), checked against rill.text.HFTextEncoder. Prints a table and writes benchmarks/results/first_image.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a handwritten digit 7"
RESULTS = Path(__file__).parent / "results" / "first_image.md"

STAGES = r"""
import json, sys, time
t0, c0, marks, prev = time.perf_counter(), time.process_time(), [], [0.0, 0.0]
def mark(name):
    w, c = time.perf_counter() - t0, time.process_time() - c0
    marks.append((name, w - prev[0], c - prev[1])); prev[:] = [w, c]
import torch; mark("import torch")
import rill.cli; threads = rill.cli.set_threads()
import rill.explain, rill.generate, rill.model, rill.sampling; mark("import rill modules")
model = rill.model.load_model(rill.cli.bundled_path("digits")); mark("load the digits model")
import transformers; from transformers import AutoTokenizer; mark("import transformers + AutoTokenizer")
import transformers.modeling_utils; mark("import transformers.modeling_utils (AutoModel)")
enc = model.text_encoder; mark("load MiniLM (tokenizer + weights)")
model.encode([sys.argv[2], ""]); mark("encode the prompt and ''")
images = rill.generate.generate(model, sys.argv[2], n=4, nfe=16, seed=0); mark("sample 4 images, 16 NFE")
rill.explain.save_png(images[0], sys.argv[1]); mark("write the first PNG")
print(json.dumps({"threads": threads, "marks": marks}))
"""

# What-if: all-MiniLM-L6-v2 token embeddings without importing transformers (BERT, Devlin et al. 2019: post-LN
# encoder layers; attention softmax(QKᵀ/√d)V with padding masked; GELU MLP).
WHAT_IF = r"""
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import torch
import torch.nn.functional as F
t1, c1 = time.perf_counter(), time.process_time()
from safetensors.torch import load_file
from tokenizers import Tokenizer
from rill.text import minilm_path
folder = minilm_path()
cfg = json.load(open(f"{folder}/config.json"))
w = load_file(f"{folder}/model.safetensors")
tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
tok.enable_truncation(32)
tok.enable_padding(length=32, pad_id=cfg["pad_token_id"])
prompts = [sys.argv[1], ""]
with torch.no_grad():
    enc = tok.encode_batch(prompts)
    ids, mask = torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc]).bool()
    B, L, D, nh, eps = *ids.shape, cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    ln = lambda x, p: F.layer_norm(x, (D,), w[p + ".weight"], w[p + ".bias"], eps)
    h = ln(w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L]
           + w["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)], "embeddings.LayerNorm")
    bias = torch.zeros(B, 1, 1, L).masked_fill(~mask[:, None, None, :], torch.finfo(h.dtype).min)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda x, n: F.linear(x, w[p + n + ".weight"], w[p + n + ".bias"])
        q, k, v = (lin(h, f"attention.self.{n}").view(B, L, nh, D // nh).transpose(1, 2)
                   for n in ("query", "key", "value"))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, L, D)
        h = ln(lin(a, "attention.output.dense") + h, p + "attention.output.LayerNorm")
        h = ln(lin(F.gelu(lin(h, "intermediate.dense")), "output.dense") + h, p + "output.LayerNorm")
    tokens = h * mask[..., None]
t2, c2 = time.perf_counter(), time.process_time()
from rill.text import HFTextEncoder
ref = HFTextEncoder("minilm").encode(prompts)
print(json.dumps({"torch": [t1 - t0, c1 - c0], "plain": [t2 - t1, c2 - c1],
                  "max_abs_diff": float((ref["tokens"] - tokens).abs().max()),
                  "mask_equal": bool(torch.equal(ref["mask"], mask))}))
"""


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(env: dict[str, str]) -> tuple[float, float, float]:
    """(seconds to the first PNG, seconds to exit, CPU seconds) of one fresh `rill generate` process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "rill", "generate", PROMPT, "--out", str(out)]
        cpu0 = child_cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        first = None
        while proc.poll() is None:
            if first is None and out.is_dir() and any(p.suffix == ".png" for p in out.iterdir()):
                first = time.perf_counter() - start
            time.sleep(0.005)
        done = time.perf_counter() - start
        stderr = proc.stderr.read() if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{stderr}")
        return first if first is not None else done, done, child_cpu() - cpu0


def run_json(code: str, *args: str, env: dict[str, str]) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s | {min(values):.2f} s | {max(values):.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    load_before = os.getloadavg()[0]
    one_run(env)  # warm the OS file cache (weights, wheels): warm-cache starts are reported
    runs = [one_run(env) for _ in range(args.runs)]
    with tempfile.TemporaryDirectory() as tmp:
        st = run_json(STAGES, str(Path(tmp) / "x.png"), PROMPT, env=env)
    what_if = run_json(WHAT_IF, PROMPT, env=env)
    load_after = os.getloadavg()[0]

    hf = sum(c for name, _, c in st["marks"] if "transformers" in name or "MiniLM" in name)
    lines = [
        "# Time to first image",
        "",
        f'`python -m rill generate "{PROMPT}"`: the bundled digits model (chosen from the prompt), -n 4,',
        "16 NFE, sampler auto, CPU; a fresh process per run, warm OS file cache (one untimed run first).",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch threads chosen by `rill`: {st['threads']}",
        f"- 1-min load average {load_before:.1f} before and {load_after:.1f} after: the machine is shared "
        "with other jobs, so wall times are inflated by roughly load/cores; CPU seconds are steadier",
        "",
        f"| measure ({args.runs} runs) | median | min | max |",
        "|---|---|---|---|",
        f"| wall: process start -> first PNG on disk | {stats([r[0] for r in runs])} |",
        f"| wall: process start -> exit | {stats([r[1] for r in runs])} |",
        f"| CPU seconds of the process (user + sys) | {stats([r[2] for r in runs])} |",
        "",
        "## Where the time goes (one instrumented run)",
        "",
        "| stage | wall | CPU |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {w:.2f} s | {c:.2f} s |" for name, w, c in st["marks"]]
    lines += [
        "",
        f"transformers (imports + MiniLM through AutoModel) takes {hf:.2f} CPU s of the "
        f"{sum(c for _, _, c in st['marks']):.2f} above.",
        "",
        "## What-if: MiniLM without transformers",
        "",
        "The same all-MiniLM-L6-v2 token embeddings from `tokenizers` + `safetensors` + a plain-torch BERT",
        "forward (the WHAT_IF snippet in this script), checked against `rill.text.HFTextEncoder`:",
        "",
        "| | wall | CPU |",
        "|---|---|---|",
        f"| import torch | {what_if['torch'][0]:.2f} s | {what_if['torch'][1]:.2f} s |",
        f"| load tokenizer + weights, encode 2 prompts | {what_if['plain'][0]:.2f} s | "
        f"{what_if['plain'][1]:.2f} s |",
        "",
        f"max |difference| of the token embeddings vs HFTextEncoder: {what_if['max_abs_diff']:.2e}; "
        f"masks equal: {what_if['mask_equal']}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
