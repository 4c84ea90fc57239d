"""Prompt adherence: the shapes checker on the dataset's own renders, the digit judge, prompt parsing."""

from __future__ import annotations

import pytest
import torch

from rill.data import load_dataset
from rill.data.shapes import parse_caption, render_scene
from rill.eval import DigitJudge, check_image, check_images, detect_objects, digit_adherence
from rill.eval.adherence import digit_of_prompt
from rill.eval.shapes_check import is_heldout_prompt

torch.set_num_threads(1)


@pytest.mark.parametrize("split", ["all", "heldout"])
def test_shapes_checker_reads_real_scenes(split):
    ds = load_dataset("shapes", split=split, n=300, seed=11)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    out = check_images(images, ds.captions)
    assert out["all"]["correct"] >= 0.99, out["all"]
    if split == "heldout":
        assert out["heldout"] is not None and out["heldout"]["correct"] >= 0.99
        assert out["seen"] is None  # every held-out scene names a held-out pair


def test_shapes_checker_reads_each_attribute():
    scene = [{"shape": "triangle", "colour": "orange", "size": "large", "position": "bottom right"}]
    image = render_scene(scene, 32)  # uint8 (H, W, 3), canonical layout
    (obj,) = detect_objects(image)
    assert (obj["shape"], obj["colour"], obj["size"], obj["position"]) == (
        "triangle",
        "orange",
        "large",
        "bottom right",
    )
    assert check_image(image, "a large orange triangle in the bottom right")["correct"]
    wrong = check_image(image, "a small orange circle in the top left")
    assert not wrong["correct"] and wrong["colour"] and not wrong["shape"] and not wrong["size"]
    assert not wrong["position"]


def test_shapes_checker_pair_relation_and_empty_image():
    cap = "a small red circle to the left of a large blue square"
    image = torch.from_numpy(render_scene(parse_caption(cap), 32)).permute(2, 0, 1).float() / 127.5 - 1
    assert check_image(image, cap)["correct"]
    swapped = check_image(image, "a large blue square to the left of a small red circle")
    assert swapped["colour"] and swapped["shape"] and not swapped["relation"] and not swapped["correct"]
    background = torch.tensor([18, 18, 26]).float().view(3, 1, 1).expand(3, 32, 32) / 127.5 - 1
    empty = check_image(background, cap)
    assert not empty["count"] and not empty["correct"]


def test_heldout_prompts_are_recognised():
    assert is_heldout_prompt("a small green triangle in the center")
    assert is_heldout_prompt("a large red square above a small yellow circle")
    assert not is_heldout_prompt("a small red circle in the top left")


def test_digit_prompts_and_judge():
    assert digit_of_prompt("a handwritten digit 7") == 7
    assert digit_of_prompt("the number seven") == 7
    assert digit_of_prompt("a red circle") is None
    assert digit_of_prompt("3 or 4") is None
    judge = DigitJudge()  # fitted on the held-out digits only
    assert judge.n_fit == len(load_dataset("digits", split="heldout"))
    assert judge.accuracy_on_real("train") > 0.95
    real = load_dataset("digits", split="train")
    prompts = [f"a handwritten digit {int(k)}" for k in real.labels[:200]]
    assert digit_adherence(real.images[:200].float(), prompts, judge)["accuracy"] > 0.95
    shuffled = [f"a handwritten digit {(int(k) + 1) % 10}" for k in real.labels[:200]]
    assert digit_adherence(real.images[:200].float(), shuffled, judge)["accuracy"] < 0.1
    with pytest.raises(ValueError, match="fitted on"):
        judge.accuracy_on_real("heldout")
