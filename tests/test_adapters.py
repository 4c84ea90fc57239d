"""Adapters: LoRA (fresh = identical, merge -> unmerge exact, matches peft, refused on another base) and
ControlNet-style control (scale 0 = base, zero-initialised branch = base, wrong-size control image refused);
both work with every registered sampler."""

from __future__ import annotations

import pytest
import torch
from _models import tiny_digits_model

from rill.adapters.lora import apply_loras, lora_net, lora_targets, lora_tensors, merge_loras, unmerge_loras
from rill.inference.adapters import load_lora, loras, parse_adapter_spec
from rill.inference.generate import generate
from rill.model import DiffusionModel, ModelConfig
from rill.model.files import TensorGroup, load_group, net_fingerprint, save_group
from rill.samplers import SAMPLERS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return tiny_digits_model(seed=1)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 1, 8, 8, generator=g)
    return x, torch.tensor([0.1, 0.5, 2.0, 10.0]), {"labels": torch.tensor([0, 3, 7, 9])}


def _group(model, seed: int = 0, targets="all", rank: int = 2, alpha: float = 4.0, scale: float = 0.3):
    """An adapter with non-zero A and B (as after training), as a TensorGroup for `model`."""
    net = lora_net(model.net, rank=rank, alpha=alpha, targets=targets, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    meta = {"rank": rank, "alpha": alpha, "target_modules": lora_targets(model.net, targets)}
    return TensorGroup("lora", "lora", lora_tensors(net), net_fingerprint(model), meta), net


def _other_base():
    """A backbone of another architecture (8 channels instead of 16)."""
    return DiffusionModel(
        ModelConfig(net="unet2d", net_preset="tiny", shape=(1, 8, 8), text_encoder="digits",
                    net_overrides={"channels": 8})
    )  # fmt: skip


def _state(model):
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_fresh_lora_changes_nothing(model):
    x, sigma, cond = _inputs()
    c_noise = sigma.log() / 4
    fresh = lora_net(model.net, rank=4, alpha=8, targets="all")
    assert all(float(p.detach().abs().sum()) == 0 for n, p in fresh.named_parameters() if "lora_B" in n)
    assert any(float(p.detach().abs().sum()) > 0 for n, p in fresh.named_parameters() if "lora_A" in n)
    with torch.no_grad():
        assert torch.equal(fresh(x, c_noise, cond), model.net(x, c_noise, cond))
    meta = {"rank": 4, "alpha": 8.0, "target_modules": lora_targets(model.net, "all")}
    group = TensorGroup("lora", "lora", lora_tensors(fresh), net_fingerprint(model), meta)
    base = model.denoiser(x, sigma, cond)
    with apply_loras(model, [(group, 1.0)]):
        assert torch.equal(model.denoiser(x, sigma, cond), base)


def test_only_lora_factors_train_and_base_is_untouched(model):
    before = _state(model)
    net = lora_net(model.net, rank=2, alpha=2, targets="attention")
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())


def test_merge_then_unmerge_restores_weights_bit_for_bit(model):
    before = _state(model)
    x, sigma, cond = _inputs()
    base = model.denoiser(x, sigma, cond)
    g1, _ = _group(model, seed=0)
    g2, _ = _group(model, seed=1, targets="attention")
    saved = merge_loras(model, [(g1, 0.7), (g2, -1.3)])
    merged = model.denoiser(x, sigma, cond)
    assert not torch.allclose(merged, base)
    assert any(not torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    unmerge_loras(model, saved)
    after = model.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(model.denoiser(x, sigma, cond), base)


def test_context_manager_restores_on_error(model):
    before = _state(model)
    group, _ = _group(model)
    with pytest.raises(RuntimeError, match="boom"), apply_loras(model, [(group, 1.0)]):
        raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())


@pytest.mark.parametrize("targets", ["all", "attention"])
def test_merged_weights_equal_peft_forward(model, targets):
    """The merge (W + s·α/r·BA) computes what peft's LoRA layers compute, for Linear and Conv layers."""
    x, sigma, cond = _inputs(3)
    c_noise = sigma.log() / 4
    group, peft_net = _group(model, seed=2, targets=targets)
    with torch.no_grad():
        expected = peft_net(x, c_noise, cond)
        with apply_loras(model, [(group, 1.0)]):
            got = model.net(x, c_noise, cond)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, model.net(x, c_noise, cond))


def test_scales_are_linear(model):
    group, _ = _group(model, targets="attention")
    name = group.meta["target_modules"][0]
    w0 = dict(model.net.named_modules())[name].weight.detach().clone()
    deltas = []
    for s in (1.0, 2.0):
        with apply_loras(model, [(group, s)]):
            deltas.append(dict(model.net.named_modules())[name].weight.detach() - w0)
    torch.testing.assert_close(deltas[1], 2 * deltas[0])
    with apply_loras(model, [(group, 1.0), (group, 1.0)]):
        torch.testing.assert_close(dict(model.net.named_modules())[name].weight - w0, deltas[1])


def test_adapter_file_round_trip_and_header(model, tmp_path):
    group, _ = _group(model)
    path = save_group(group, tmp_path / "a.safetensors")
    back = load_lora(path, model)
    assert back.kind == "lora" and back.base == net_fingerprint(model)
    assert back.meta["rank"] == 2 and back.meta["alpha"] == 4.0
    assert back.meta["target_modules"] == group.meta["target_modules"]
    assert all(torch.equal(back.tensors[k], v) for k, v in group.tensors.items())
    x, sigma, cond = _inputs()
    with apply_loras(model, [(group, 0.5)]):
        a = model.denoiser(x, sigma, cond)
    with loras(model, [f"{path}:0.5"]):
        b = model.denoiser(x, sigma, cond)
    assert torch.equal(a, b)


def test_adapter_for_another_base_is_refused(model, tmp_path):
    group, _ = _group(model)
    path = save_group(group, tmp_path / "a.safetensors")
    other = _other_base()
    with pytest.raises(ValueError, match="was made for the backbone") as e:
        load_group(path, other)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="was made for the backbone"), loras(other, [str(path)]):
        pass
    with pytest.raises(ValueError, match="was made for the backbone"), loras(other, [(group, 1.0)]):
        pass


def test_adapter_spec_parsing():
    assert parse_adapter_spec("a.safetensors") == ("a.safetensors", 1.0)
    assert parse_adapter_spec("a.safetensors:0.25") == ("a.safetensors", 0.25)
    assert parse_adapter_spec("dir:x/a.safetensors") == ("dir:x/a.safetensors", 1.0)


def test_lora_targets_errors(model):
    with pytest.raises(ValueError, match="not Linear/Conv layers"):
        lora_targets(model.net, ["no.such.layer"])


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_lora_with_every_sampler(model, sampler):
    before = _state(model)
    group, _ = _group(model, targets="attention")
    base = generate(model, ["a 3"], n=2, nfe=4, sampler=sampler, seed=0)
    with apply_loras(model, [(group, 1.0)]):
        out = generate(model, ["a 3"], n=2, nfe=4, sampler=sampler, seed=0)
    assert out.shape == base.shape and torch.isfinite(out).all()
    assert not torch.equal(out, base)
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())


def test_finetune_lora_trains_only_the_adapter(model):
    from rill.train.finetune import FinetuneConfig, finetune_lora

    before = _state(model)
    cfg = FinetuneConfig(data="digits", filter="3", limit=8, steps=6, batch_size=4, lr=1e-2, log_every=3)
    group = finetune_lora(model, cfg, rank=2, alpha=2.0, targets="all", log=lambda _: None)
    assert group.kind == "lora" and group.base == net_fingerprint(model)
    assert group.meta["items"] == 8 and group.meta["steps"] == 6
    assert any(float(v.abs().sum()) > 0 for k, v in group.tensors.items() if "lora_B" in k)
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    with pytest.raises(ValueError, match="no item's caption contains"):
        finetune_lora(model, FinetuneConfig(data="digits", filter="zebra", steps=1), log=lambda _: None)


def test_finetune_lora_on_a_grey_image_folder(model, tmp_path):
    """folder:PATH data for a 1-channel model: RGB PNGs of any size become (1, 8, 8) grey samples."""
    import json
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from rill.train.finetune import FinetuneConfig, finetune_data, finetune_lora

    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": f"a handwritten {i + 1}"}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    cfg = FinetuneConfig(data=f"folder:{tmp_path}", steps=2, batch_size=2, log_every=1)
    data = finetune_data(model, cfg)
    assert len(data) == 4 and data[0][0].shape == (1, 8, 8) and data.captions[0] == "a handwritten 1"
    group = finetune_lora(model, cfg, rank=2, alpha=2.0, targets="all", log=lambda _: None)
    assert group.meta["items"] == 4
    odd = SimpleNamespace(config=SimpleNamespace(shape=(2, 8, 8)))
    with pytest.raises(ValueError, match=r"image folders give square grey \(1, S, S\) or RGB.*\(2, 8, 8\)"):
        finetune_data(odd, cfg)


def test_cli_finetune_then_generate_with_lora(model, tmp_path, capsys):
    from rill.app.cli import main
    from rill.model.files import save_model

    base = save_model(model, tmp_path / "tiny.safetensors")
    adapter = tmp_path / "three.safetensors"
    argv = ["finetune", "--lora", "--model", str(base), "--data", "digits", "--filter", "3", "--limit", "4",
            "--steps", "2", "--batch-size", "2", "--rank", "2", "--threads", "1",
            "--out", str(adapter)]  # fmt: skip
    assert main(argv) == 0 and adapter.is_file()
    gen = ["generate", "a 3", "--model", str(base), "-n", "1", "--nfe", "2", "--out", str(tmp_path / "o")]
    assert main([*gen, "--lora", f"{adapter}:0.5", "--lora", str(adapter)]) == 0
    assert "LoRA:" in capsys.readouterr().out
    assert main(["finetune", "--lora", "--data", "digits", "--out", str(tmp_path / "x.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err


# --- control ------------------------------------------------------------------------------------------------
def _control_group(model, randomise: bool = True, seed: int = 0) -> TensorGroup:
    """A control branch for `model`; randomise=True re-draws its zero convolutions (as after training)."""
    from rill.adapters.control import ControlBranch

    branch = ControlBranch(model.net)
    if randomise:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in branch.named_parameters():
                if name.startswith(("zero_convs", "hint.4")):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    tensors = {k: v.detach().clone() for k, v in branch.state_dict().items()}
    meta = {"control": "edges", "control_channels": 1, "hidden": 16}
    return TensorGroup("control", "controlnet", tensors, net_fingerprint(model), meta)


def _control_image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, 8, 8, generator=g) > 0.5).float()


def test_fresh_control_branch_changes_nothing(model):
    from rill.inference.adapters import controlled

    x, sigma, cond = _inputs()
    wrapped = controlled(model, _control_group(model, randomise=False), _control_image(), scale=1.0)
    assert torch.equal(wrapped.denoiser(x, sigma, cond), model.denoiser(x, sigma, cond))


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_control_scale_zero_equals_base_with_every_sampler(model, sampler):
    from rill.inference.adapters import controlled

    before = _state(model)
    group = _control_group(model)
    base = generate(model, ["a 3", "a 7"], n=2, nfe=4, sampler=sampler, seed=0)
    zero = generate(controlled(model, group, _control_image(), scale=0.0), ["a 3", "a 7"], n=2, nfe=4,
                    sampler=sampler, seed=0)  # fmt: skip
    assert torch.equal(zero, base)
    steered = generate(controlled(model, group, _control_image(), scale=1.0), ["a 3", "a 7"], n=2, nfe=4,
                       sampler=sampler, seed=0)  # fmt: skip
    assert torch.isfinite(steered).all() and not torch.equal(steered, base)
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())


def test_control_image_of_the_wrong_size_is_refused(model, tmp_path):
    from PIL import Image

    from rill.inference.adapters import controlled

    group = _control_group(model)
    with pytest.raises(ValueError, match=r"needs 1 channel\(s\) at 8×8") as e:
        controlled(model, group, torch.zeros(1, 16, 16))
    assert "\n" not in str(e.value) and "resize" in str(e.value)
    png = tmp_path / "big.png"
    Image.new("L", (32, 32)).save(png)
    with pytest.raises(ValueError, match="big.png.*at 8×8"):
        controlled(model, group, png)


def test_control_branch_for_another_base_is_refused(model, tmp_path):
    from rill.inference.adapters import controlled

    path = save_group(_control_group(model), tmp_path / "c.safetensors")
    other = _other_base()
    with pytest.raises(ValueError, match="was made for the backbone"):
        controlled(other, path, _control_image())


def test_control_residuals_of_the_wrong_length_are_refused(model):
    x, sigma, _ = _inputs()
    with pytest.raises(ValueError, match="must hold .* tensors"):
        model.net(x, sigma.log() / 4, {"labels": torch.zeros(4), "control_residuals": [torch.zeros(1)]})


def test_control_maps():
    from rill.adapters.control import control_map, edge_map, layout_map

    scene = [{"center": (0.25, 0.5), "extent": 0.125}]
    m = layout_map(scene, 8)
    assert m.shape == (1, 8, 8) and m.sum() == 4 and m[0, 3:5, 1:3].sum() == 4
    img = -torch.ones(3, 8, 8)
    img[:, 2:6, 2:6] = 1
    e = edge_map(img)
    assert e.shape == (1, 8, 8) and e[0, 0, 0] == 0 and e[0, 4, 4] == 0 and e[0, 2, 1] == 1
    with pytest.raises(ValueError, match="needs the scene"):
        control_map("layout", img, None)
    with pytest.raises(ValueError, match="not known"):
        control_map("depth", img)


def test_finetune_control_and_cli(model, tmp_path, capsys):
    from rill.app.cli import main
    from rill.model.files import save_model
    from rill.train.finetune import FinetuneConfig, finetune_control

    before = _state(model)
    cfg = FinetuneConfig(data="digits", limit=8, steps=3, batch_size=4, lr=1e-2, log_every=3)
    group = finetune_control(model, cfg, kind="edges", log=lambda _: None)
    assert group.kind == "controlnet" and group.meta["control"] == "edges"
    assert any(float(v.abs().sum()) > 0 for k, v in group.tensors.items() if k.startswith("zero_convs"))
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    with pytest.raises(ValueError, match="needs the scene"):
        finetune_control(model, cfg, kind="layout", log=lambda _: None)

    base = save_model(model, tmp_path / "tiny.safetensors")
    branch = save_group(group, tmp_path / "edges.safetensors")
    from PIL import Image

    Image.fromarray((_control_image()[0].numpy() * 255).astype("uint8")).save(tmp_path / "c.png")
    gen = ["generate", "a 3", "--model", str(base), "-n", "2", "--nfe", "3"]
    assert main([*gen, "--out", str(tmp_path / "plain")]) == 0
    ctl = ["--control", str(tmp_path / "c.png"), "--controlnet", str(branch)]
    assert main([*gen, *ctl, "--control-scale", "0", "--out", str(tmp_path / "zero")]) == 0
    for a in sorted((tmp_path / "plain").glob("*.png")):
        assert a.read_bytes() == (tmp_path / "zero" / a.name).read_bytes()
    assert main([*gen, "--controlnet", str(branch), "--out", str(tmp_path / "x")]) == 2
    assert "needs --control IMG" in capsys.readouterr().err
    argv = ["finetune", "--control", "edges", "--model", str(base), "--data", "digits", "--limit", "4",
            "--steps", "1", "--batch-size", "2", "--threads", "1",
            "--out", str(tmp_path / "e.safetensors")]  # fmt: skip
    assert main(argv) == 0


def test_controlled_generate_keeps_the_callers_mode(model):
    from rill.inference.adapters import controlled

    group = _control_group(model)
    for mode in (True, False):
        model.train(mode)
        generate(controlled(model, group, _control_image(), scale=1.0), ["a 3"], n=1, nfe=2, seed=0)
        assert model.training is mode and model.net.training is mode
    model.eval()


def test_checker_taught_pink_keeps_the_dataset_colours():
    """The LoRA demo reads pink with an extended palette; the dataset's own colours must read the same."""
    import numpy as np

    from rill.data import ShapesDataset
    from rill.data.shapes import BACKGROUND, COLOURS, place_scene, render_scene
    from rill.eval.shapes_check import detect_objects

    palette = {**COLOURS, "pink": (250, 120, 190)}
    data = ShapesDataset(n=40, seed=3)
    for i in range(len(data)):
        img = data[i][0]
        assert [o["colour"] for o in detect_objects(img, colours=palette)] == [
            o["colour"] for o in detect_objects(img)
        ]
    scene = place_scene([{"shape": "circle", "colour": "white", "size": "large", "position": "center"}])
    white = render_scene(scene).astype(float)
    alpha = ((white - BACKGROUND) / (np.array(COLOURS["white"]) - BACKGROUND)).mean(-1, keepdims=True)
    pink = np.rint(BACKGROUND + alpha * (np.array(palette["pink"]) - BACKGROUND)).astype(np.uint8)
    assert [o["colour"] for o in detect_objects(pink, colours=palette)] == ["pink"]
    assert detect_objects(pink)[0]["colour"] != "pink"
