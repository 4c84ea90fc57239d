"""The `rill` command: generate / info / samplers / demo end to end; errors exit 2 with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from _models import tiny_digits_model

from rill.app.cli import choose_bundled, main
from rill.model.files import bundled_file

torch.set_num_threads(1)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
BUNDLED_READY = all(
    (resources.files("rill") / "assets" / f"{n}.safetensors").is_file() for n in ("digits", "shapes", "emoji")
)


def rill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rill", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny class-conditioned 8×8 model with random weights, saved the way `rill train` saves models."""
    from rill.model import save_model

    model = tiny_digits_model()
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", metadata={"step": 7})


def test_generate_subprocess_writes_pngs(tiny_ckpt, tmp_path):
    from PIL import Image

    out = tmp_path / "out"
    r = rill(
        "generate",
        "a handwritten digit 7",
        "--model",
        str(tiny_ckpt),
        "-n",
        "3",
        "--nfe",
        "4",
        "--seed",
        "5",
        "--out",
        str(out),
        "--scale",
        "4",
        "--gif",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    names = sorted(p.name for p in out.iterdir())
    (grid,) = out.glob("*-grid.png")  # <slug>-<hash of the settings>-grid.png
    stem = grid.name.removesuffix("-grid.png")
    assert stem.startswith("a-handwritten-digit-7-") and len(stem) == len("a-handwritten-digit-7-") + 8
    for s in (5, 6, 7):
        assert f"{stem}-seed{s}.png" in names and f"{stem}-seed{s}-x4.png" in names
    with Image.open(out / f"{stem}-seed6.png") as im:
        assert im.size == (8, 8) and im.mode == "L"
    with Image.open(out / f"{stem}-seed6-x4.png") as im:
        assert im.size == (32, 32)
    with Image.open(out / f"{stem}-grid.png") as im:
        assert im.size == ((3 * 9 + 1) * 4, 10 * 4)
    with Image.open(out / f"{stem}-denoising.gif") as im:
        assert im.n_frames == 5 and im.size == ((3 * 9 + 1) * 4, (2 * 9 + 1) * 4)  # 4 steps + the sample


def test_generate_png_matches_generate_api(tiny_ckpt, tmp_path):
    """The CLI's seed-6 PNG is image 2 of generate(seed=5, n=2): the CLI adds nothing of its own."""
    import numpy as np
    from PIL import Image

    from rill.inference.generate import generate
    from rill.model import load_model
    from rill.viz import to_uint8

    assert (
        main(
            [
                "generate",
                "a 3",
                "--model",
                str(tiny_ckpt),
                "-n",
                "2",
                "--nfe",
                "3",
                "--seed",
                "5",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    expected = to_uint8(generate(load_model(tiny_ckpt), "a 3", n=2, nfe=3, seed=5, device="cpu"))[
        1, 0
    ].numpy()
    (png,) = tmp_path.glob("a-3-*-seed6.png")
    assert np.array_equal(np.asarray(Image.open(png)), expected)


def test_info_and_samplers(tiny_ckpt, capsys):
    assert main(["info", str(tiny_ckpt)]) == 0
    text = capsys.readouterr().out
    assert "rill-model/1" in text and "text encoder: digits" in text and "step: 7" in text
    n_params = sum(p.numel() for n, p in _tensors(tiny_ckpt).items())
    assert f"{n_params:,}" in text
    assert main(["samplers"]) == 0
    text = capsys.readouterr().out
    for name in ("euler", "heun", "dpmpp_2m", "ddim"):
        assert f"\n{name} " in text


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize(
    "args, match",
    [
        (["generate", "a 1", "--model", "does/not/exist.safetensors"], "does not exist"),
        (["generate", "a 1", "--sampler", "dpmpp2m"], "did you mean 'dpmpp_2m'"),
        (["info", "nowhere.safetensors"], "does not exist"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, match, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert match.lower() in err.lower() and len(err.splitlines()) == 1 and "Traceback" not in err


def test_not_safetensors_is_refused(tmp_path, capsys):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"\x80\x04not a safetensors file at all")
    assert main(["info", str(fake)]) == 2
    assert "not a safetensors file" in capsys.readouterr().err
    renamed = tmp_path / "pickle.safetensors"
    renamed.write_bytes(b"\x80\x04not a safetensors file at all")
    assert main(["generate", "a 1", "--model", str(renamed)]) == 2
    assert "not a safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value", [("--nfe", "0"), ("--nfe", "ten"), ("-n", "-1"), ("--seed", "-3"), ("--guidance", "nan")]
)
def test_bad_numbers_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "a 1", flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and value in err and len(err.splitlines()) == 1


def test_subprocess_error_has_no_traceback(tmp_path):
    r = rill("generate", "a 1", "--model", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr


def test_choose_bundled():
    assert choose_bundled("a handwritten digit 7") == "digits"
    assert choose_bundled("the number seven") == "digits"
    assert choose_bundled("a large red circle in the center") == "shapes"
    assert choose_bundled("a small blue square above a large green circle") == "shapes"
    assert choose_bundled("a blue square in the top left") == "shapes"
    emoji = "emoji" if bundled_file("emoji").is_file() else "shapes"  # shapes: no emoji model installed
    assert choose_bundled("someone") == emoji  # 'one' only as a whole word
    assert choose_bundled("a cat face") == choose_bundled("a red circle") == emoji  # no size, no place


def test_import_is_light():
    code = "import sys, rill.app.cli; print(any(m in sys.modules for m in ('torch', 'transformers', 'PIL')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


@pytest.mark.skipif(
    not BUNDLED_READY, reason="bundled models rill/assets/{digits,shapes,emoji}.safetensors not shipped yet"
)
def test_demo_on_bundled_models(tmp_path, capsys):
    from PIL import Image

    assert main(["demo", "--out", str(tmp_path), "--columns", "2", "--nfe", "8"]) == 0
    for name in ("digits.png", "shapes.png", "emoji.png", "denoising-strip.png", "denoising.gif", "index.md"):
        assert (tmp_path / name).is_file(), name
    with Image.open(tmp_path / "digits.png") as im:
        assert im.height == (10 * 9 + 1) * 8  # 10 rows of 8×8 digits, scale 8
    assert "held out" in (tmp_path / "index.md").read_text()
    assert str(tmp_path) in capsys.readouterr().out


@pytest.mark.parametrize("command, flag", [("train", "--preset"), ("eval", "--nfe")])
def test_train_and_eval_forward_their_arguments(command, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and flag in capsys.readouterr().out
