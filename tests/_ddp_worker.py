"""Worker for tests/test_ddp.py, started by `torchrun --nproc_per_node 2`: a few steps of the real training
loop (rill.train.train, through the accelerate Accelerator, gloo on the CPU). Each rank records the data
indices it trained on and writes its final and initial backbone weights to OUT/rank{R}.safetensors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from rill.model import DiffusionModel  # noqa: E402
from rill.train import batches as rill_batches  # noqa: E402
from rill.train import train, train_preset  # noqa: E402


def main(out: Path) -> None:
    rank = int(os.environ["RANK"])
    seen: list[list[int]] = []
    state: dict[str, object] = {}
    real_get, real_loss = rill_batches.ShardedBatches.get, DiffusionModel.loss

    def get(self, step):
        x0, captions, idx = real_get(self, step)
        seen.append(idx.tolist())
        state["n"] = len(self.dataset)
        return x0, captions, idx

    def loss(self, *args, **kw):
        if "model" not in state:  # the first call comes before any update: the initial weights
            state["model"] = self
            state["initial"] = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return real_loss(self, *args, **kw)

    rill_batches.ShardedBatches.get, DiffusionModel.loss = get, loss
    cfg = train_preset(
        "digits",
        out_dir=str(out / "run"),
        steps=4,
        batch_size=16,
        log_every=2,
        checkpoint_every=2,
        sample_every=0,
        warmup_steps=1,
        num_threads=1,
        **{"model.text_encoder": "digits", "model.net_overrides": {"channels": 16}},
    )
    train(cfg, progress=False)
    final = {f"final.{k}": v.detach().contiguous() for k, v in state["model"].net.state_dict().items()}
    initial = {f"initial.{k}": v.contiguous() for k, v in state["initial"].items()}
    save_file({**final, **initial}, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(
        json.dumps({"seen": seen, "n": state["n"], "world": int(os.environ["WORLD_SIZE"])})
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
