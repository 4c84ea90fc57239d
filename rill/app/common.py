"""What the `rill` commands share: the one-line user error, number types for flags, finding a model file,
and the thread choice."""

from __future__ import annotations

import argparse
import os
import re
import time
import unicodedata
from pathlib import Path

__all__ = ["UserError", "number", "choose_bundled", "check_checkpoint", "model_path", "bundled_path",
           "set_threads", "slug", "BUNDLED", "DEVICE_HELP", "run_model", "read_header",
           "check_out_dir", "free_cores"]  # fmt: skip

DEVICE_HELP = "cpu | cuda | mps (default: the best available)"


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


_KINDS = {"int>=1": "a positive integer", "int>=0": "a non-negative integer", "float": "a finite number"}


def number(kind: str):
    """An argparse type: "int>=1", "int>=0" or "float" (finite); the error names what was expected."""

    def parse(text: str) -> int | float:
        try:
            value = float(text) if kind == "float" else int(text)
        except ValueError:
            value = None
        lo = {"int>=1": 1, "int>=0": 0}.get(kind, -float("inf"))
        if value is None or not (lo <= value < float("inf")):
            raise argparse.ArgumentTypeError(f"expected {_KINDS[kind]}, got {text!r}")
        return value

    return parse


BUNDLED = ("digits", "shapes", "emoji")
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_RE = re.compile(
    r"(?<![a-z0-9])(\d|digit|digits|number|numeral|handwritten|" + "|".join(_NUMBER_WORDS) + ")"
    r"(?![a-z0-9])"
)


def _reads_as_shapes_scene(text: str) -> bool:
    """A circle, square or triangle with a size or a place ("a large red circle", "... in the top left",
    "... to the left of ..."): the vocabulary of rill.data.shapes' captions."""
    from ..data.shapes import POSITIONS, RELATIONS, SHAPES, SIZES

    words = set(re.findall(r"[a-z]+", text))
    places = (*RELATIONS, *(f"in the {p}" for p in (*POSITIONS, "centre")))
    return bool(words & set(SHAPES)) and (bool(words & set(SIZES)) or any(p in text for p in places))


def choose_bundled(prompt: str) -> str:
    """'digits' when the prompt mentions a digit or a number ("7", "seven", "digit", "handwritten"); 'shapes'
    when it reads as a shapes scene ("a large red circle in the center"); else 'emoji' ("a cat face"), or
    'shapes' where no emoji model is installed."""
    text = " ".join(prompt.lower().split())
    if _DIGIT_RE.search(text):
        return "digits"
    if _reads_as_shapes_scene(text):
        return "shapes"
    from ..model.files import bundled_file

    return "emoji" if bundled_file("emoji").is_file() else "shapes"


def check_checkpoint(path: str) -> Path:
    """A readable .safetensors file, or a UserError saying what is wrong and what to do."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(
            f"checkpoint {path!r} does not exist; pass a .safetensors file written by 'rill train' "
            f"or a bundled model: {', '.join(BUNDLED)}"
        )
    if p.is_dir():
        return check_checkpoint(str(run_model(p, path)))
    with open(p, "rb") as f:
        head = f.read(9)
    if p.suffix != ".safetensors" or len(head) < 9 or head[8:9] != b"{":
        raise UserError(
            f"checkpoint {path!r} is not a safetensors file; rill reads models saved by "
            "'rill train' (model.safetensors), never pickles"
        )
    return p


def run_model(run: Path, spec: str, say=print) -> Path:
    """The model file of a training run's folder: model.safetensors when the run finished, else (a run still
    going, killed, or resumed past its model file) the EMA weights of its newest verified checkpoint, which it
    names through `say`."""
    import json

    from ..train.checkpoint import latest_checkpoint

    final = run / "model.safetensors"
    ckpt = latest_checkpoint(run) if (run / "checkpoints").is_dir() else None
    if ckpt is None or not (ckpt / "ema.safetensors").is_file():
        if final.is_file():
            return final
        raise UserError(
            f"{spec!r} is a folder without a model.safetensors or a verified checkpoint; pass a "
            ".safetensors file or the --out folder of a 'rill train' run"
        )
    step = int(json.loads((ckpt / "state.json").read_text(encoding="utf-8"))["step"])
    if final.is_file():
        info = json.loads(read_header(final)[0].get("rill.info", "{}"))
        if int(info.get("step", -1)) >= step:
            return final
    say(f"model: {ckpt / 'ema.safetensors'} (EMA weights of the newest verified checkpoint, step {step}; "
        f"the run has {'an older' if final.is_file() else 'no'} model.safetensors)")  # fmt: skip
    return ckpt / "ema.safetensors"


def read_header(path: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """(metadata, tensor shapes) of a safetensors file, from its header only; a truncated or damaged file is
    a UserError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {}), {k: f.get_slice(k).get_shape() for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) for damaged files
        raise UserError(
            f"{path} is damaged or truncated ({e.__class__.__name__}: {str(e).splitlines()[0][:120]}); "
            "copy it again or use another checkpoint"
        ) from None


def model_path(spec: str) -> Path:
    """The model file of a bundled name (BUNDLED), a .safetensors path or a run's folder."""
    return bundled_path(spec) if spec in BUNDLED else check_checkpoint(spec)


def _cpu_sample() -> tuple[float, float, float] | None:
    """(wall s, busy CPU s of the whole machine, this process's CPU s) now; None without /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal; guest is inside user
    return time.monotonic(), busy, time.process_time()


_START = _cpu_sample()  # taken when the command starts: the window ends when the threads are chosen


def free_cores(before, after, cores: int) -> int:
    """Cores the other processes leave free between two _cpu_samples: the machine's busy CPU time minus this
    process's own, over the wall time, rounded; at least 1."""
    wall = after[0] - before[0]
    others = max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / max(wall, 1e-9)
    return max(1, min(cores, cores - round(others)))


def set_threads() -> int:
    """torch threads = the cores other processes are using right now left free, unless OMP_NUM_THREADS is set.

    torch's OpenMP threads spin-wait for each other: on an oversubscribed CPU, 16 denoiser calls of the digits
    model took 24 s with 2 threads and 0.8 s with 1 (2 cores, load average 9), so never ask for busy cores.
    "Right now" is the machine's CPU time (/proc/stat) minus this process's own, from the command's start to
    this call (at least 50 ms), not the 1-minute load average, which still counts rill's own previous run
    for a minute after it ended (back-to-back `rill demo` runs picked 1 thread of 2). Without /proc/stat
    (macOS, Windows) the load average is used.
    """
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        cores = os.cpu_count() or 1
        now = _cpu_sample()
        if _START is not None and now is not None:
            if now[0] - _START[0] < 0.05:
                time.sleep(0.05 - (now[0] - _START[0]))
                now = _cpu_sample()
            free = free_cores(_START, now, cores)
        else:
            try:
                free = round(cores - os.getloadavg()[0])
            except OSError:  # no load average on this platform
                free = cores
        torch.set_num_threads(max(1, min(cores, free)))
    return torch.get_num_threads()


def slug(prompt: str, limit: int = 40) -> str:
    """A readable file-name part in any script: accents on Latin letters folded (é -> e; й and が stay),
    letters and digits of every language kept, lower case, the rest turned into '-', cut at a word boundary
    near `limit` characters."""
    kept: list[str] = []
    for c in unicodedata.normalize("NFKD", prompt):
        if not (unicodedata.combining(c) and kept and kept[-1].isascii()):
            kept.append(c)
    text = unicodedata.normalize("NFC", "".join(kept)).lower()
    text = re.sub(r"[\W_]+", "-", text).strip("-")
    if len(text) > limit:
        cut = text[:limit]
        text = cut[: cut.rfind("-")] if "-" in cut[limit // 2 :] else cut
    return text.strip("-") or "unconditional"


def check_out_dir(out: str) -> Path:
    """--out as a folder that can be written, checked before any work: a file, or a folder that cannot be
    written, is a UserError. Nothing is created here (a failed command leaves no empty folder)."""
    p = Path(out).expanduser()
    parent = next((q for q in (p, *p.parents) if q.exists()), Path("."))
    if not parent.is_dir():
        raise UserError(f"--out {out!r}: {str(parent)!r} is a file, not a folder; pass a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"--out {out!r}: cannot write to {str(parent)!r} (permission denied); pass another folder"
        )
    return p


def bundled_path(name: str) -> Path:
    """The file of a bundled model (rill/assets/NAME.safetensors), or a UserError if it is not installed."""
    from ..model.files import bundled_file

    path = bundled_file(name)
    if not path.is_file():
        raise UserError(
            f"the bundled model {name!r} is not installed ({path} is missing); reinstall rill "
            f"(pip install -e .) or train one: rill train --preset {name}"
        )
    return path


def load_image_model(model_arg: str | None, prompt: str, purpose: str):
    """(spec, path, model) for an image command: --model, or the bundled model the prompt names (said so);
    threads set; a model that does not draw images is a UserError naming `purpose`."""
    spec = model_arg or choose_bundled(prompt)
    if not model_arg:
        names = "|".join(BUNDLED)
        print(f"model: bundled '{spec}' (chosen from the prompt; pass --model {names}|CKPT to choose)")
    path = model_path(spec)
    set_threads()
    from ..model.files import load_model

    model = load_model(path)
    shape = tuple(model.config.shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise UserError(f"{path} makes samples of shape {shape}, not images; {purpose}")
    return spec, path, model
