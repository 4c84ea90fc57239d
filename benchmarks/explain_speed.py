"""Speed of `rill explain` and of `rill serve`'s first preview; screenshots for the docs.

    python benchmarks/explain_speed.py [--threads 2] [--runs 5] [--screenshots docs/img] [--no-write]

1. `rill explain --model digits`, then `--model shapes` (both with the shipped 2-D points model), each a fresh
   process with OMP_NUM_THREADS=threads: wall time, CPU seconds (the machine may be shared: CPU time depends
   much less on other users) and each view's wall and CPU seconds from numbers.json.
2. `rill serve` (uvicorn in a thread) driven by headless Chromium (Debian's /usr/bin/chromium): for the digits
   model, the time from pressing Generate to the first x̂0 preview on the page, measured by the page itself
   (performance.now()), `runs` times.
3. With --screenshots DIR: the page after a shapes job, and the top of explain's index.html for shapes.
Prints a table and writes benchmarks/results/explain_speed.md (and the shapes run's numbers.json as
benchmarks/results/explain_shapes.json, which docs/explain.md quotes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "explain_speed.md"
CHROMIUM = "/usr/bin/chromium"


def run_explain(model: str, out: Path, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "rill", "explain", "--model", model, "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    views = json.loads((out / "numbers.json").read_text())["views"]
    return {
        "wall": wall,
        "cpu": cpu,
        "views": {k: (v["numbers"].get("wall_s"), v["numbers"].get("cpu_s")) for k, v in views.items()},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_measurements(runs: int, screenshots: Path | None, explain_page: Path | None) -> list[float]:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from rill.app.serve import Settings, create_app

    port = free_port()
    settings = Settings(port=port, warm=("digits", "shapes"))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    time.sleep(3)  # let the warm-up (loading both models and the text encoder) finish
    first = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            for k in range(runs):
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("document.querySelectorAll('#model option').length >= 2")
                page.fill("#prompt", f"a handwritten digit {k % 10}")
                page.dispatch_event("#prompt", "change")
                page.fill("#seed", str(k))
                page.click("#go")
                page.wait_for_selector("#result", timeout=60_000)
                first.append(page.evaluate("window.firstPreviewMs") / 1000)
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function("document.querySelectorAll('#model option').length >= 2")
                page.fill("#prompt", "a large red circle to the left of a small blue square")
                page.dispatch_event("#prompt", "change")
                page.fill("#nfe", "24")
                page.select_option("#sampler", "dpmpp_2m")
                page.click("#go")
                page.wait_for_selector("#result", timeout=60_000)
                page.screenshot(path=str(screenshots / "serve.png"), full_page=True)
                if explain_page is not None:
                    page.set_viewport_size({"width": 1100, "height": 1400})
                    page.goto(explain_page.resolve().as_uri())
                    page.screenshot(path=str(screenshots / "explain.png"))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    return first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--screenshots", type=Path)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    rows, views = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, label in (("digits", "shipped points model"), ("shapes", "shipped points model")):
            r = run_explain(model, Path(tmp) / model, args.threads)
            rows.append((model, label, r["wall"], r["cpu"]))
            views[model] = r["views"]
            print(f"rill explain --model {model}, {label}: {r['wall']:.1f} s wall, {r['cpu']:.1f} CPU s")
        first = page_measurements(args.runs, args.screenshots, Path(tmp) / "shapes" / "index.html")
        shapes_numbers = (Path(tmp) / "shapes" / "numbers.json").read_text()
    print(f"first preview after Generate (digits): median {statistics.median(first):.3f} s of {first}")
    lines = [
        "# rill explain and rill serve: speed",
        "",
        f"`python benchmarks/explain_speed.py --threads {args.threads} --runs {args.runs}`; torch threads "
        f"{args.threads}, {os.cpu_count()} cores, 1-min load average {load:.2f} at the start "
        "(a shared machine: CPU seconds depend much less on the other users than wall time).",
        "",
        "| command | folder | wall s | CPU s |",
        "|---|---|---|---|",
        *[f"| `rill explain --model {m}` | {label} | {w:.1f} | {c:.1f} |" for m, label, w, c in rows],
        "",
        "Seconds per view, wall / CPU (CPU counts every thread of the process):",
        "",
        "| view | " + " | ".join(views) + " |",
        "|---|" + "---|" * len(views),
        *[
            f"| {v} | "
            + " | ".join(f"{views[m][v][0] or 0:.1f} / {views[m][v][1] or 0:.1f}" for m in views)
            + " |"
            for v in views["digits"]
        ],
        "",
        "`rill serve`, digits model, headless Chromium: Generate pressed -> first x̂0 preview on the page: "
        f"median {statistics.median(first):.3f} s (runs: {', '.join(f'{t:.3f}' for t in first)}).",
        "",
    ]
    print("\n".join(lines))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("\n".join(lines))
        RESULTS.with_name("explain_shapes.json").write_text(shapes_numbers)  # docs/explain.md quotes it
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
