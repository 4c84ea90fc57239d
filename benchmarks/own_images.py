""" "Train on your own images", timed end to end: the README's commands on a folder of PNGs made here.

    python benchmarks/own_images.py [--steps 100] [--no-write]

Makes 24 64×64 PNGs (red / blue / green discs and squares on white, captions in metadata.jsonl, plus one
0-byte file that is skipped), then runs, each as a fresh process on one thread:
    rill train --data folder:DIR --steps N --threads 1 --out RUN            (32×32, the default)
    rill train --data folder:DIR --image-size 64 --steps N --threads 1 ...  (64×64, the net's attention moves)
    rill generate "a red circle" --model RUN -n 4
and records wall and CPU seconds of each (CPU seconds because the machine may be shared). Prints a table and
writes benchmarks/results/own_images.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "own_images.md"
COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 170, 60)}


def make_images(root: Path, n: int = 24) -> Path:
    from PIL import Image, ImageDraw

    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        colour, shape = list(COLOURS)[i % 3], ("circle", "square")[(i // 3) % 2]
        im = Image.new("RGB", (64, 64), "white")
        box = (10 + i % 8, 10 + i % 5, 44 + i % 8, 44 + i % 5)
        draw = ImageDraw.Draw(im)
        (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
        im.save(root / f"img{i:02d}.png")
        rows.append(json.dumps({"file_name": f"img{i:02d}.png", "text": f"a {colour} {shape}"}))
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    (root / "broken.png").write_bytes(b"")
    return root


def timed(args: list[str], cwd: Path) -> tuple[float, float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "rill", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"rill {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        make_images(cwd / "my-images")
        common = ["--steps", str(a.steps), "--threads", "1", "--quiet"]
        for label, extra, run in (("train, 32×32 (default)", [], "run32"),
                                  ("train, --image-size 64", ["--image-size", "64"], "run64")):  # fmt: skip
            wall, cpu, out = timed(
                ["train", "--data", "folder:my-images", *extra, *common, "--out", run], cwd
            )
            rows.append((f"{label}, {a.steps} steps, batch 128", wall, cpu))
            wall, cpu, out = timed(
                ["generate", "a red circle", "--model", run, "-n", "4", "--out", "out"], cwd
            )
            rows.append((f"generate 4 images from {run} (16 NFE)", wall, cpu))
    load = os.getloadavg()[0]
    lines = [
        f"# Train on your own images: 24 PNGs, one thread (load {load:.1f} on {os.cpu_count()} cores)",
        "",
        "`python benchmarks/own_images.py` (each row a fresh process, including the torch import).",
        "",
        "| command | wall s | CPU s |",
        "|---|---:|---:|",
        *(f"| {name} | {wall:.1f} | {cpu:.1f} |" for name, wall, cpu in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_write:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
