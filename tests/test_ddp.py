"""Two CPU processes (torchrun + gloo) run the real training loop through accelerate: the ranks must end with
identical weights after training on different shards of every global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rill.train.batches import batch_indices
from rill.train.checkpoint import latest_checkpoint, load_checkpoint

WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun (from torch) is not on PATH")
def test_two_process_ddp_training(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", str(WORKER), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    weights = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert logs[0]["world"] == logs[1]["world"] == 2
    # identical parameters on both ranks, and training really moved them
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
    moved = [
        k
        for k in weights[0]
        if k.startswith("final.")
        and not torch.equal(weights[0][k], weights[0]["initial." + k[len("final.") :]])
    ]
    assert len(moved) > 10
    # each rank saw its own half of every global batch of 16
    for step, (a, b) in enumerate(zip(logs[0]["seen"], logs[1]["seen"])):
        assert len(a) == len(b) == 8 and not set(a) & set(b)
        assert a + b == batch_indices(step, logs[0]["n"], 16, seed=0).tolist()
    assert len(logs[0]["seen"]) == 4
    # the checkpoint holds both ranks' training-noise generators (gathered through accelerate)
    ck = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    gens = ck.rng_tensors["gen.noise"]
    assert (
        ck.step == 4
        and ck.state["world_size"] == 2
        and gens.shape[0] == 2
        and not torch.equal(gens[0], gens[1])
    )
    assert (tmp_path / "run" / "model.safetensors").is_file()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
