"""Model files and checkpoints: safetensors + JSON only, atomic, verified, pruned, and never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest
import torch

from rill.model import DiffusionModel, ModelConfig, bundled_model, load_model, read_safetensors, save_model
from rill.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    capture_rng,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    unflatten_optimizer_state,
    verify_checkpoint,
)

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMALL = dict(
    net="unet2d", net_preset="tiny", shape=(1, 8, 8), text_encoder="digits", net_overrides={"channels": 16}
)


def _model(**kw) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(ModelConfig(**{**SMALL, **kw}))


def _trained_optimizer(net: torch.nn.Module, steps: int = 3) -> torch.optim.AdamW:
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01)
    for _ in range(steps):
        net.zero_grad()
        sum((p**2).sum() for p in net.parameters()).backward()
        opt.step()
    return opt


class Evil:
    """A pickle payload: unpickling it creates the folder `marker` (it runs code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_save_load_model_roundtrip(tmp_path):
    model = _model()
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.01 * torch.randn_like(p))  # leave the zero-init so outputs depend on every weight
    path = save_model(model, tmp_path / "m.safetensors", metadata={"step": 7})
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]  # one file, no temporaries left
    tensors, meta = read_safetensors(path)
    assert all(k.startswith("net.") for k in tensors)
    assert json.loads(meta["rill.model_config"])["net_overrides"]["channels"] == 16
    loaded = load_model(path)
    assert loaded.info == {"step": 7}
    x, sigma = torch.randn(4, 1, 8, 8), torch.tensor([0.1, 1.0, 5.0, 40.0])
    cond = model.encode(["3", "seven", "", "a 1"])
    mine, theirs = model.net.state_dict(), loaded.net.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)  # bit for bit
    # the loaded image net runs its convolutions channels-last (NHWC): the same function, other sum order
    assert loaded.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    out = loaded.denoiser(x, sigma, cond)
    torch.testing.assert_close(out, model.denoiser(x, sigma, cond), rtol=0, atol=1e-5)
    model.net.to(memory_format=torch.channels_last)  # the same layout: the same bits
    assert torch.equal(loaded.denoiser(x, sigma, cond), model.denoiser(x, sigma, cond))


def test_load_model_names_mismatching_tensors(tmp_path):
    model = _model()
    path = save_model(model, tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["rill.model_config"])
    cfg["net_overrides"]["channels"] = 32  # the config now disagrees with the stored tensors
    from safetensors.torch import save_file

    save_file(
        tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "rill.model_config": json.dumps(cfg)}
    )
    with pytest.raises(ValueError, match=r"shape mismatches .*net\.conv_in\.weight"):
        load_model(tmp_path / "bad.safetensors")
    del tensors["net.conv_in.bias"]
    save_file(tensors, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"missing tensors \['net\.conv_in\.bias'\]"):
        load_model(tmp_path / "missing.safetensors")


def test_pickles_are_refused_without_running(tmp_path):
    live = tmp_path / "proof_the_payload_is_live"
    pickle.loads(pickle.dumps(Evil(str(live))))  # unpickling really runs it ...
    assert live.exists()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Evil(str(marker)))
    for name in ("model.pt", "model.ckpt", "model.safetensors"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ValueError, match="never|not a safetensors"):
            load_model(tmp_path / name)
    torch.save({"x": Evil(str(marker))}, tmp_path / "zip.safetensors")  # torch's zip-pickle format
    with pytest.raises(ValueError, match="not a safetensors"):
        load_model(tmp_path / "zip.safetensors")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path / "model.pt")
    assert not marker.exists()  # ... but nothing here ever unpickled it


def test_pickled_checkpoint_is_refused_even_with_a_consistent_manifest(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path, _checkpoint(model, step=5))
    marker = tmp_path / "pwned"
    (path / "optimizer.safetensors").write_bytes(pickle.dumps(Evil(str(marker))))
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        load_checkpoint(path)
    manifest = json.loads((path / "manifest.json").read_text())  # an attacker rewrites the manifest too
    import hashlib

    data = (path / "optimizer.safetensors").read_bytes()
    manifest["optimizer.safetensors"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)
    with pytest.warns(UserWarning, match="skipping invalid checkpoint"):
        assert latest_checkpoint(tmp_path) is None
    assert not marker.exists()


def test_optimizer_state_roundtrip_continues_identically():
    torch.manual_seed(0)
    net_a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    opt_a = _trained_optimizer(net_a)
    tensors, meta = flatten_optimizer_state(opt_a.state_dict())
    json.dumps(meta)  # the non-tensor part is plain JSON
    assert set(tensors) == {f"state.{i}.{k}" for i in range(4) for k in ("step", "exp_avg", "exp_avg_sq")}
    net_b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    net_b.load_state_dict(net_a.state_dict())
    opt_b = torch.optim.AdamW(net_b.parameters(), lr=1.0)
    opt_b.load_state_dict(unflatten_optimizer_state(tensors, json.loads(json.dumps(meta))))
    assert opt_b.param_groups[0]["lr"] == 1e-2 and opt_b.param_groups[0]["betas"] == (0.9, 0.99)
    for net, opt in ((net_a, opt_a), (net_b, opt_b)):
        for _ in range(2):
            net.zero_grad()
            sum((p**3).sum() for p in net.parameters()).backward()
            opt.step()
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(pa, pb)


def test_rng_capture_restore_repeats_every_stream():
    g = torch.Generator().manual_seed(3)
    tensors, meta = capture_rng({"noise": g})
    assert tensors["torch_cpu"].dtype == torch.uint8 and tensors["gen.noise"].dtype == torch.uint8
    meta = json.loads(json.dumps(meta))  # survives JSON
    first = (torch.rand(3), torch.rand(3, generator=g), random.random(), np.random.rand(3))
    restore_rng(tensors, meta, {"noise": g})
    second = (torch.rand(3), torch.rand(3, generator=g), random.random(), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[2] == second[2] and np.array_equal(first[3], second[3])


def _checkpoint(model: DiffusionModel, step: int) -> Checkpoint:
    opt = _trained_optimizer(model.net, steps=1)
    rng_t, rng_m = capture_rng()
    meta = {"rill.model_config": json.dumps({"shape": [1, 8, 8]})}
    return Checkpoint(
        step,
        model.net.state_dict(),
        opt.state_dict(),
        rng_t,
        rng_m,
        {"images_seen": step},
        ema={k: v + 1 for k, v in model.net.state_dict().items()},
        model_metadata=meta,
    )


def test_checkpoint_roundtrip_keep_last_and_corruption(tmp_path):
    model = _model()
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(tmp_path, _checkpoint(model, step), keep_last=3)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-00000030", "step-00000040", "step-00000050"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))
    ck = load_checkpoint(latest_checkpoint(tmp_path))
    assert ck.step == 50 and ck.state["images_seen"] == 50
    for k, v in model.net.state_dict().items():
        assert torch.equal(ck.model[k], v) and torch.equal(ck.ema[k], v + 1)
    # a flipped byte in the newest checkpoint: it is skipped, the previous one is used
    f = tmp_path / "checkpoints" / "step-00000050" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors does not match"):
        verify_checkpoint(f.parent)
    with pytest.warns(UserWarning, match="step-00000050"):
        assert latest_checkpoint(tmp_path).name == "step-00000040"
    # a crash mid-write leaves only a hidden temporary folder: never taken for a checkpoint
    (tmp_path / "checkpoints" / ".step-00000060.tmp-999999").mkdir()
    (tmp_path / "checkpoints" / "step-00000070").mkdir()  # and an incomplete one without a manifest
    with pytest.warns(UserWarning):
        assert latest_checkpoint(tmp_path).name == "step-00000040"


def test_bundled_model_unknown_name_lists_available():
    with pytest.raises(ValueError, match="no bundled model 'nope'; available"):
        bundled_model("nope")
