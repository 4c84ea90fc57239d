"""A user's first hour (issue 10), replayed as a user would: `python -m rill …` in a subprocess with tiny
settings, checking what the user sees (exit code, the one-line message, the files left behind).

Items: 1 a run folder belongs to one run; 2 folder datasets just work; 3 --model RUN_FOLDER on an
unfinished run; 4 one-line errors, one exit-code convention, nothing half-written; 5 names that never collide,
settings in every PNG, --from reproduces; 6 limits, warnings, progress, incremental writing, tiled grids,
vocabulary hints; 7 threads; 8 the smaller promises (--help, info's recipe, the --minutes bar).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _procs import signal_when_ready

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), ENV.get("PYTHONPATH")]))
# a tiny digits run: class-label conditioning, a 16-channel U-Net, a few steps (seconds on one thread)
TINY = ["--preset", "digits", "--batch-size", "16", "--sample-every", "0", "--threads", "1", "--quiet",
        "--log-every", "1", "--text-encoder", "digits", "--set", "model.net_overrides.channels=16",
        "--set", "warmup_steps=1"]  # fmt: skip


def rill(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rill", *map(str, args)],
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=cwd,
        timeout=600,
    )


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    """The command failed with `code` and said so in one line, without a traceback."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith("rill "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def run4(tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("runs") / "r4"
    r = rill("train", *TINY, "--steps", "4", "--checkpoint-every", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def log_steps(out: Path) -> list[int]:
    return [int(ln.split(",")[0]) for ln in (out / "log.csv").read_text().splitlines()[1:]]


# --- 1. a run folder belongs to one run ---------------------------------------------------------------------
def test_1_a_second_run_into_a_run_folder_is_refused_then_overwrite_moves_the_old_run_aside(run4, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run4, run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # the scenario: a new run into the old run's folder, with other settings, without --resume
    r = rill("train", *TINY, "--steps", "6", "--checkpoint-every", "3", "--out", run)
    line = one_line_error(r, 2)
    assert "already holds a training run" in line and "--resume" in line and "--overwrite" in line
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # nothing mixed in: not one file touched
    const = ("--lr-schedule", "constant")  # so that resuming with more steps keeps the steps already taken
    r = rill("train", *TINY, *const, "--steps", "6", "--checkpoint-every", "3", "--out", run, "--overwrite")
    assert r.returncode == 0, r.stderr
    old = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(old) == 1 and "moved the run" in r.stdout
    assert {p.relative_to(old[0]): p.read_bytes() for p in old[0].rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    assert log_steps(run) == list(range(1, 7))  # one run's log, not three appended
    # --resume continues the new run, not the old one
    r = rill("train", *TINY, *const, "--steps", "7", "--checkpoint-every", "3", "--out", run, "--resume")
    assert r.returncode == 0 and "resumed at step 6" in r.stdout, r.stderr
    assert log_steps(run) == list(range(1, 8))
    line = one_line_error(rill("train", *TINY, "--steps", "7", "--out", run, "--resume", "--overwrite"))
    assert "pass one" in line


# --- 3. --model RUN_FOLDER on a run that is still going or was killed --------------------------------------
def test_3_generate_from_an_unfinished_run_uses_the_newest_verified_ema_checkpoint(run4, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(run4 / "checkpoints", killed / "checkpoints")  # as after kill -9: no model.safetensors
    (killed / "checkpoints" / "step-00000004" / "ema.safetensors").write_bytes(
        b"garbage"
    )  # a torn newest one
    r = rill(
        "generate",
        "a handwritten digit 3",
        "--model",
        killed,
        "-n",
        "1",
        "--nfe",
        "2",
        "--out",
        tmp_path / "o",
    )
    assert r.returncode == 0, r.stderr
    assert "step-00000002" in r.stdout and "ema.safetensors" in r.stdout and "step 2" in r.stdout
    assert list((tmp_path / "o").glob("*.png"))


# --- 4. one-line errors, one exit-code convention, nothing half-written -------------------------------------
def test_4_train_out_a_file_an_unwritable_folder_and_bad_data_leave_nothing(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is a file" in one_line_error(rill("train", *TINY, "--steps", "1", "--out", afile))
    assert "is a file" in one_line_error(rill("train", *TINY, "--steps", "1", "--out", afile / "sub"))
    line = one_line_error(rill("train", *TINY, "--steps", "1", "--data", f"folder:{tmp_path / 'nope'}",
                               "--out", tmp_path / "never"))  # fmt: skip
    assert "not a directory" in line and not (tmp_path / "never").exists()  # no empty --out folder
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "permission" in one_line_error(rill("train", *TINY, "--steps", "1", "--out", locked / "r"))


def test_4_info_on_a_truncated_file_is_one_line(run4, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((run4 / "model.safetensors").read_bytes()[:3000])
    assert "truncated" in one_line_error(rill("info", cut))


# --- 2. train on your own images ----------------------------------------------------------------------------
def make_image_folder(root: Path, n: int = 12, size: int = 64) -> Path:
    """n PNGs of red and blue discs with captions in metadata.jsonl, plus a 0-byte PNG without a caption."""
    from PIL import Image, ImageDraw

    root.mkdir(parents=True)
    rows = []
    for i in range(n):
        colour = ("red", "blue")[i % 2]
        im = Image.new("RGB", (size, size), "white")
        ImageDraw.Draw(im).ellipse(
            (8 + i, 12, 40 + i, 44), fill=(220, 40, 40) if colour == "red" else (40, 60, 220)
        )
        im.save(root / f"img{i:02d}.png")
        rows.append(json.dumps({"file_name": f"img{i:02d}.png", "text": f"a {colour} circle"}))
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    (root / "empty.png").write_bytes(b"")  # a failed download: no bytes, no caption
    return root


@pytest.mark.parametrize("size", [None, "64"])
def test_2_train_on_a_folder_of_64px_pngs_with_the_defaults_then_generate(tmp_path, size):
    images = make_image_folder(tmp_path / "my-images")
    out = tmp_path / "run"
    flags = ["--image-size", size] if size else []
    r = rill("train", "--data", f"folder:{images}", *flags, "--steps", "2", "--batch-size", "4",
             "--threads", "1", "--quiet", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "skipped 1 unreadable image" in r.stdout and "empty.png: empty file (0 bytes)" in r.stderr
    assert "Traceback" not in r.stderr
    side = int(size or 32)
    assert f"12 samples of (3, {side}, {side})" in r.stdout
    if size:
        assert "cross_attn_resolutions (8, 4) -> (16, 8)" in r.stdout
    r = rill("generate", "a red circle", "--model", out, "-n", "1", "--nfe", "2", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    from PIL import Image

    (png,) = [p for p in (tmp_path / "o").glob("*.png") if "-x" not in p.name and "grid" not in p.name]
    with Image.open(png) as im:
        assert im.size == (side, side)


def test_2_an_image_size_the_net_cannot_divide_names_the_sizes_that_fit(tmp_path):
    images = make_image_folder(tmp_path / "imgs", n=2)
    line = one_line_error(rill("train", "--data", f"folder:{images}", "--image-size", "60", "--steps", "1",
                               "--out", tmp_path / "r"))  # fmt: skip
    assert "multiple of 8" in line and "--image-size 56 or 64" in line and not (tmp_path / "r").exists()
    line = one_line_error(rill("train", "--data", "digits", "--image-size", "16", "--dry-run"))
    assert "--image-size is for image folders" in line


# --- 5. names that never collide, the settings in every PNG, --from reproduces ------------------------------
def pngs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.png") if "-x" not in p.name and "-grid" not in p.name)


def test_5_prompts_that_share_48_characters_or_differ_in_case_never_overwrite_each_other(tmp_path):
    out = tmp_path / "o"
    base = "a handwritten digit 7, drawn slowly and carefully with a pen"
    for prompt in (base + " on paper", base + " on glass", base.upper() + " ON PAPER"):
        r = rill("generate", prompt, "--model", "digits", "-n", "1", "--nfe", "2", "--out", out)
        assert r.returncode == 0, r.stderr
    assert len(pngs(out)) == 3 and len(list(out.glob("*-grid.png"))) == 3


def test_5_non_latin_prompts_keep_a_readable_name():
    from rill.app.common import slug

    assert slug("一个红色的圆") == "一个红色的圆"
    assert slug("Ein großer Kreis, café!") == "ein-großer-kreis-cafe"
    assert slug("красный круг") == "красный-круг" and slug("がぎ") == "がぎ"
    assert slug("!!!") == "unconditional"
    assert len(slug("word " * 40)) <= 40 and not slug("word " * 40).endswith("-")


def test_5_every_png_carries_its_settings_and_from_reproduces_it_bit_exactly(tmp_path):
    import numpy as np
    from PIL import Image

    from rill.viz.images import read_png_text

    first = tmp_path / "first"
    r = rill("generate", "the number four", "--model", "digits", "-n", "3", "--seed", "40", "--nfe", "6",
             "--sampler", "dpmpp_2m", "--guidance", "2.5", "--negative", "the number nine",
             "--out", first)  # fmt: skip
    assert r.returncode == 0, r.stderr
    third = pngs(first)[2]
    assert third.name.endswith("-seed42.png")
    text = read_png_text(third)
    saved = json.loads(text["rill"])
    assert saved["prompt"] == "the number four" and saved["negative"] == "the number nine"
    assert (saved["seed"], saved["sampler"], saved["nfe"], saved["guidance"]) == (42, "dpmpp_2m", 6, 2.5)
    assert saved["model"] == "digits" and len(saved["model_hash"]) == 10 and saved["rill"]
    assert "Seed: 42" in text["parameters"] and "CFG scale: 2.5" in text["parameters"]
    r = rill("info", third)
    assert r.returncode == 0 and "prompt: the number four" in r.stdout and "seed: 42" in r.stdout
    again = tmp_path / "again"
    r = rill("generate", "--from", third, "--out", again)  # a new command, -n 1, batch of one
    assert r.returncode == 0, r.stderr
    (copy,) = pngs(again)
    assert copy.name == third.name
    assert np.array_equal(np.asarray(Image.open(copy)), np.asarray(Image.open(third)))
    line = one_line_error(rill("generate", "--from", list(first.glob("*-x*.png"))[0].parent / "nope.png"))
    assert "does not exist" in line
    plain = tmp_path / "plain.png"
    Image.new("L", (8, 8)).save(plain)
    assert "carries no rill settings" in one_line_error(rill("info", plain))


# --- 6. limits, warnings, progress, incremental writing, tiled grids, vocabulary hints ----------------------
@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--nfe", "100000"], "at most|1000 or less"),
        (["-n", "100000"], "more than 10000 images"),
        (["--guidance", "-1"], "outside [0, 100]"),
        (["--guidance", "1000"], "outside [0, 100]"),
    ],
)
def test_6_out_of_bounds_values_stop_before_any_work_and_write_nothing(tmp_path, flags, says):
    import re

    line = one_line_error(rill("generate", "a 3", "--model", "digits", *flags, "--out", tmp_path / "o"))
    assert re.search(says.replace("[", r"\[").replace("]", r"\]"), line) and not (tmp_path / "o").exists()


def test_6_legal_but_unwise_values_warn_and_still_work(tmp_path):
    r = rill("generate", "a small red circle " * 30, "--model", "shapes", "-n", "1", "--nfe", "8",
             "--sampler", "heun", "--guidance", "20", "--out", tmp_path / "o")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "--guidance 20.0 is very strong" in r.stderr
    assert "the text encoder reads only the first 32" in r.stderr
    assert "--sampler heun is second order: --nfe 8 is only 4 steps" in r.stderr
    r = rill(
        "generate", "a cat below a dog", "--model", "shapes", "-n", "1", "--nfe", "2", "--out", tmp_path / "o"
    )
    assert r.returncode == 0 and "never saw 'cat', 'below', 'dog'" in r.stderr
    assert "words this model knows:" in r.stderr and " circle " in r.stderr
    r = rill(
        "generate", "the number seven", "--model", "digits", "-n", "1", "--nfe", "2", "--out", tmp_path / "o"
    )
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr  # a clean prompt: no noise


def test_6_big_jobs_show_progress_write_each_batch_and_tile_the_grid(tmp_path):
    from PIL import Image

    out = tmp_path / "o"
    r = rill("generate", "a 5", "--model", "digits", "-n", "60", "--nfe", "2", "--batch-size", "16",
             "--scale", "64", "--out", out)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "60/60" in r.stderr  # tqdm
    assert len(pngs(out)) == 60
    grids = sorted(out.glob("*-grid-*.png"))
    assert len(grids) == 2 and "(2 files)" in r.stdout  # 9 × 64 px a row: 7 rows of 8 in 4096 px
    with Image.open(grids[0]) as im:  # 56 images: 8 columns, 7 rows, exactly 4096 px tall
        assert im.size == ((8 * 9 + 1) * 64, (7 * 9 + 1) * 64)
    with Image.open(grids[1]) as im:  # the other 4
        assert im.size == ((4 * 9 + 1) * 64, (1 * 9 + 1) * 64)


def test_6_ctrl_c_keeps_the_finished_batches_and_leaves_nothing_half_written(tmp_path):
    import signal

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "rill", "generate", "a 5", "--model", "digits", "-n", "5000", "--nfe", "40",
           "--batch-size", "8", "--out", str(out)]  # fmt: skip
    code, err = signal_when_ready(cmd, ENV, lambda: out.is_dir() and len(pngs(out)) >= 8, signal.SIGINT, 300)
    assert code == 130 and "interrupted" in err, err
    assert not list(out.glob(".*tmp*"))  # no half-written file
    from PIL import Image

    for p in pngs(out):
        with Image.open(p) as im:
            im.load()  # every PNG on disk is complete


# --- 7. threads ---------------------------------------------------------------------------------------------
def test_7_threads_follow_what_other_processes_use_now_not_the_load_average(monkeypatch):
    import torch

    from rill.app import common

    # (wall s, machine busy CPU s, own CPU s): the machine was busy only with this process's own work
    assert common.free_cores((0.0, 100.0, 5.0), (1.0, 101.0, 6.0), cores=2) == 2
    assert common.free_cores((0.0, 100.0, 5.0), (1.0, 102.0, 6.0), cores=2) == 1  # one other busy core
    assert common.free_cores((0.0, 100.0, 5.0), (1.0, 108.0, 5.0), cores=4) == 1  # oversubscribed: >= 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(common.os, "getloadavg", lambda: (9.0, 9.0, 9.0))  # rill's own run a minute ago
    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(common, "_START", (0.0, 100.0, 5.0))
    monkeypatch.setattr(common, "_cpu_sample", lambda: (1.0, 100.5, 5.5))  # idle now
    try:
        assert common.set_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_7_resuming_with_other_threads_says_it_is_not_bit_exact(tmp_path):
    run = tmp_path / "run"
    const = ("--lr-schedule", "constant")  # the preset's wsd schedule would change with --steps
    assert rill("train", *TINY, *const, "--steps", "4", "--out", run).returncode == 0
    r = rill("train", *TINY, *const, "--steps", "5", "--out", run, "--resume", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert "not bit-exactly" in r.stdout and "--threads 1 for an exact resume" in r.stdout


# --- 8. the smaller promises --------------------------------------------------------------------------------
def test_8_minutes_bar_counts_time_help_promises_only_what_is_written_info_prints_the_recipe(run4, tmp_path):
    r = rill("train", *[f for f in TINY if f != "--quiet"], "--minutes", "0.05", "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    assert "/3 s [" in r.stderr and "/3000 [" not in r.stderr  # 0.05 min = 3 s of budget, not 3000 steps
    r = rill("train", "--help")
    assert "samples/ when a preview is due" in " ".join(r.stdout.split())
    r = rill("info", run4)
    assert r.returncode == 0 and "recipe:" in r.stdout
    for fact in ("data: digits", "step: 4", "batch_size: 16", "lr_schedule: wsd", "thread(s)"):
        assert fact in r.stdout


def test_8_only_diffusers_numpy_copy_deprecation_is_filtered(pytestconfig):
    import warnings

    from _pytest.config import parse_warning_filter

    (entry,) = pytestconfig.getini("filterwarnings")
    action, message, category, module, _ = parse_warning_filter(entry, escape=False)
    text = "__array__ implementation doesn't accept a copy keyword, so passing copy=False failed."
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings(action, message, category, module)
        for mod in ("diffusers.schedulers.scheduling_euler_discrete", "rill.samplers.euler"):
            warnings.warn_explicit(text, DeprecationWarning, "x.py", 1, module=mod)
        warnings.warn_explicit("something else", DeprecationWarning, "x.py", 1, module="diffusers.x")
    assert [str(w.message) for w in seen] == [text, "something else"]  # rill's own is still shown
