"""rill eval: prompt files, clear errors for bad inputs and mismatched checkpoints, the whole pipeline."""

from __future__ import annotations

import json

import pytest
import torch
from _models import tiny_digits_model

from rill.eval.cli import main, main_eval
from rill.eval.features import FeatureCNN
from rill.eval.run import evaluate_model, format_table, read_prompt_file
from rill.model import DiffusionModel, save_model

torch.set_num_threads(1)


def _tiny_digits_model() -> DiffusionModel:
    return tiny_digits_model(scale=0.1, dataset="digits")


def test_prompt_files(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# digits\na handwritten digit 1\n\n  a handwritten digit 2  \n")
    assert read_prompt_file(txt) == ["a handwritten digit 1", "a handwritten digit 2"]
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"prompts": ["a 1", "a 2"]}))
    assert read_prompt_file(js) == ["a 1", "a 2"]


def test_prompt_file_that_does_not_parse_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  "a handwritten digit 1",\n  "a handwritten digit 2"\n  "missing comma"\n]\n')
    with pytest.raises(ValueError, match=r"bad\.json:4: invalid JSON"):
        read_prompt_file(bad)
    typed = tmp_path / "typed.json"
    typed.write_text('[\n  "a 1",\n  7\n]\n')
    with pytest.raises(ValueError, match=r"typed\.json:3: prompt #1 is a int"):
        read_prompt_file(typed)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"a 1\na \xff 2\n")
    with pytest.raises(ValueError, match=r"bin\.txt:2: not UTF-8"):
        read_prompt_file(binary)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_prompt_file(tmp_path / "nope.txt")


def test_shapes_prompt_that_the_checker_cannot_read(tmp_path, capsys):
    model = _tiny_digits_model()
    path = save_model(model, tmp_path / "m.safetensors")
    prompts = tmp_path / "shapes.txt"
    prompts.write_text("a small red circle in the center\na purple cow\n")
    assert main([str(path), "--data", "shapes", "--prompts", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert "shapes.txt: prompt #1 ('a purple cow') cannot be checked" in err


def test_mismatched_checkpoint_error_reaches_the_user(tmp_path, capsys):
    model = _tiny_digits_model()
    path = save_model(model, tmp_path / "m.safetensors")
    from safetensors.torch import load_file, save_file

    from rill.model import read_safetensors

    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["rill.model_config"])
    cfg["net_overrides"]["channels"] = 24  # the config no longer matches the stored weights
    meta["rill.model_config"] = json.dumps(cfg)
    save_file(load_file(str(path)), str(tmp_path / "bad.safetensors"), metadata=meta)
    assert main([str(tmp_path / "bad.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "bad.safetensors" in err and "do not match the model config" in err
    with pytest.raises(ValueError, match="do not match the model config"):
        main_eval([str(tmp_path / "bad.safetensors")])


def test_end_to_end_pipeline_and_n_below_two(tmp_path):
    model = _tiny_digits_model()
    net = FeatureCNN(1, 8, 10, width=16).eval()  # untrained: this checks the plumbing, not the numbers
    prompts = ["a handwritten digit 1", "a handwritten digit 7"]
    result = evaluate_model(model, "digits", prompts, n=3, nfe=2, sampler="euler", features=net, log=False)
    assert result["images"] == 6 and result["reference_images"] == 1438
    for key in (
        "fd",
        "fd_real_floor",
        "precision",
        "recall",
        "diversity",
        "adherence",
        "adherence_real",
        "saturation",
        "clipped",
    ):
        assert result[key] is not None and result[key] == result[key], key
    assert "Fréchet distance" in format_table(result)
    with pytest.raises(ValueError, match="n \\(images per prompt\\) must be >= 2"):
        evaluate_model(model, "digits", prompts, n=1, nfe=2, features=net, log=False)


def test_quality_doc_is_written_from_results(tmp_path):
    from benchmarks.quality_report import write_quality_doc

    results = tmp_path / "results"
    results.mkdir()
    (results / "validation.json").write_text(
        json.dumps(
            {
                "nll_d2_exact": {"max_rel_error_per_sample": 1e-4, "nfe": 100},
                "nll_d16_hutchinson": {
                    "probes": 16,
                    "mean_estimate_nats": 22.36,
                    "mean_exact_nats": 22.37,
                    "rel_error_of_mean": 4e-4,
                    "max_rel_error_per_sample": 0.04,
                },
                "shapes_checker_all": 1.0,
                "shapes_checker_heldout": 0.995,
                "digit_judge_on_train": 0.98,
            }
        )
    )
    doc = write_quality_doc(results, tmp_path / "quality.md")
    text = doc.read_text()
    assert "99.5%" in text and "22.360 vs 22.370" in text
    assert "Not run yet" in text  # the sweeps and benchmarks are missing: said, not invented


def test_shapes_eval_reports_background_std_and_patch_blobs_beside_real():
    from rill.model import bundled_model

    net = FeatureCNN(3, 32, 10, width=16).eval()  # untrained: the plumbing, not the FD
    prompts = ["a small red circle in the top left", "a large blue square above a small white circle"]
    result = evaluate_model(
        bundled_model("shapes"), "shapes", prompts, n=2, nfe=4, sampler="euler", features=net, log=False
    )
    assert 0 < result["background_std"] < 1 and result["background_std_real"] < 1e-4
    assert result["blob_images_real"] == 0.0 and 0 <= result["blob_images"] <= 1
    table = format_table(result)
    assert "background std" in table and "images with a patch blob" in table
