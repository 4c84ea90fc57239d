"""Time to first image: process start of `rill generate "a handwritten digit 7"` -> its first PNG on disk.

    python benchmarks/first_image.py [--runs 5] [--threads N] [--no-write]

Each run starts a fresh `python -m rill generate ...` (defaults: the bundled digits model, -n 4, 16 NFE) into
an empty folder; the parent polls the folder every 5 ms and records when the first .png appears and when the
process exits. Then one instrumented child run splits the time into stages (imports, model load, text encoder
load, encoding, sampling, PNG), and `python -X importtime` lists the heaviest imports. Prints a table and
writes benchmarks/results/first_image.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a handwritten digit 7"
RESULTS = Path(__file__).parent / "results" / "first_image.md"

STAGES = r"""
import time, json, sys
t0 = time.perf_counter(); marks = {}
def mark(name):
    marks[name] = time.perf_counter() - t0
import torch; mark("import torch")
import rill.cli, rill.generate, rill.explain, rill.model, rill.sampling; mark("import rill modules")
from rill.model import load_model
model = load_model(rill.cli.bundled_path("digits")); mark("load model weights")
enc = model.text_encoder; mark("load text encoder (import transformers + MiniLM)")
model.encode(["a handwritten digit 7", ""]); mark("encode prompt + empty prompt")
images = rill.generate.generate(model, "a handwritten digit 7", n=4, nfe=16, seed=0)
mark("generate 4 images (16 NFE; prompts already encoded)")
rill.explain.save_png(images[0], sys.argv[1]); mark("write first PNG")
print(json.dumps(marks))
"""


def one_run(env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds to the first PNG, seconds to process exit, stdout) of one fresh `rill generate` process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "rill", "generate", PROMPT, "--out", str(out)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = None
        while proc.poll() is None:
            if first is None and out.is_dir() and any(p.suffix == ".png" for p in out.iterdir()):
                first = time.perf_counter() - start
            time.sleep(0.005)
        done = time.perf_counter() - start
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{stderr}")
        if first is None:  # written in the last poll interval
            first = done
        return first, done, stdout


def stages(env: dict[str, str]) -> dict[str, float]:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [sys.executable, "-c", STAGES, str(Path(tmp) / "x.png")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    return json.loads(r.stdout.strip().splitlines()[-1])


def heaviest_imports(env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """Top-level packages by cumulative import time (-X importtime), importing what `rill generate` uses."""
    code = "import rill.cli, rill.generate, rill.explain, rill.model, rill.sampling, rill.text, transformers"
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env
    )
    totals: dict[str, float] = {}
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        if name.startswith(" "):  # nested: counted in its top-level parent
            continue
        totals[name.strip()] = totals.get(name.strip(), 0.0) + int(parts[1]) / 1e6
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--threads", type=int, default=None, help="OMP_NUM_THREADS for the child (default: unset)"
    )
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    load_before = os.getloadavg()[0]
    one_run(env)  # warm the OS file cache (weights, wheels): we report warm-cache starts
    runs = [one_run(env) for _ in range(args.runs)]
    firsts, exits = [r[0] for r in runs], [r[1] for r in runs]
    st = stages(env)
    imports = heaviest_imports(env)
    load_after = os.getloadavg()[0]

    lines = [
        "# Time to first image",
        "",
        f'`python -m rill generate "{PROMPT}"` (bundled digits model chosen from the prompt, -n 4, 16 NFE,',
        "sampler auto, CPU), fresh process per run, warm OS file cache (one untimed run first).",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"Python {platform.python_version()}; 1-min load average {load_before:.1f} before, {load_after:.1f} "
        "after "
        "(the machine is shared: a high load inflates every number)",
        f"- runs: {args.runs}; OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}",
        "",
        "| measure | median | min | max |",
        "|---|---|---|---|",
        f"| process start -> first PNG on disk | {statistics.median(firsts):.2f} s | {min(firsts):.2f} s | "
        f"{max(firsts):.2f} s |",
        f"| process start -> exit | {statistics.median(exits):.2f} s | {min(exits):.2f} s | "
        f"{max(exits):.2f} s |",
        "",
        "## Where the time goes (one instrumented run, cumulative seconds from the child's first line)",
        "",
        "| stage | at | takes |",
        "|---|---|---|",
    ]
    prev = 0.0
    for name, at in st.items():
        lines.append(f"| {name} | {at:.2f} s | {at - prev:.2f} s |")
        prev = at
    lines += [
        "",
        "## Heaviest top-level imports (`-X importtime`, cumulative)",
        "",
        "| module | seconds |",
        "|---|---|",
    ]
    lines += [f"| {name} | {sec:.2f} |" for name, sec in imports]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
