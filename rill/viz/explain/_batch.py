"""Several generate() runs at once, their denoiser calls merged into one batch per round.

    images = generate_together(model, [dict(sampler="euler", nfe=2), dict(sampler="heun", nfe=99)],
                               prompts="a red circle", seed=0)

On a CPU a small model's call on 16 images costs little more than on 2 (the per-call overhead dominates), so
the Steps view's 19 runs of one seed, or the Guidance view's 8 scales, are much cheaper side by side than one
after the other. Each run goes through generate() unchanged in a thread of its own (its sampler, grid, plan
and guidance are its own); its model's denoiser waits for the round. A round starts when every unfinished run
waits, so round r holds the r-th denoiser call of every run that makes at least r calls: the batches do not
depend on thread timing. The batched calls all run in the calling thread (one OpenMP team for torch).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...core.tensors import sigma_batch
from ...inference.generate import eval_mode, generate

__all__ = ["generate_together"]


class _Rounds:
    """The meeting point of the runs: requests of the current round and the answers of the last one."""

    def __init__(self, denoiser, runs: int):
        self.denoiser, self.live = denoiser, runs
        self.pending: dict[int, tuple[Tensor, Tensor, dict | None]] = {}
        self.answers: dict[int, Tensor | BaseException] = {}
        self.cv = threading.Condition()
        self.batches: list[int] = []  # images per round (for the record)

    def call(self, run: int, x: Tensor, sigma, cond) -> Tensor:  # in a run's thread
        with self.cv:
            self.pending[run] = (x, sigma_batch(sigma, x), cond)
            self.cv.notify_all()
            self.cv.wait_for(lambda: run in self.answers)
            out = self.answers.pop(run)
        if isinstance(out, BaseException):
            raise out
        return out

    def finish(self) -> None:  # in a run's thread, when its run has ended (or failed)
        with self.cv:
            self.live -= 1
            self.cv.notify_all()

    def serve(self) -> None:  # in the calling thread, until every run has ended
        with self.cv:
            while True:
                self.cv.wait_for(lambda: self.live == 0 or len(self.pending) >= self.live)
                if not self.pending:
                    return
                runs = sorted(self.pending)
                requests = [self.pending.pop(r) for r in runs]
                try:
                    outs: list = self._batched(requests)
                except Exception as e:  # every run of the round gets the error
                    outs = [e] * len(runs)
                self.answers.update(zip(runs, outs))
                self.cv.notify_all()

    @torch.no_grad()
    def _batched(self, requests: list[tuple[Tensor, Tensor, dict | None]]) -> list[Tensor]:
        # requests whose cond tensors differ in shape beyond the batch go in separate calls
        groups: dict[tuple, list[int]] = {}
        for i, (x, _, cond) in enumerate(requests):
            layout = None if cond is None else tuple((k, tuple(v.shape[1:])) for k, v in sorted(cond.items()))
            groups.setdefault((tuple(x.shape[1:]), layout), []).append(i)
        outs: list[Tensor] = [torch.empty(0)] * len(requests)
        for index in groups.values():
            sizes = [len(requests[i][0]) for i in index]
            x = torch.cat([requests[i][0] for i in index])
            sigma = torch.cat([requests[i][1] for i in index])
            first = requests[index[0]][2]
            cond = None
            if first is not None:
                cond = {
                    k: torch.cat([_rows(requests[i][2][k], n) for i, n in zip(index, sizes)]) for k in first
                }
            self.batches.append(len(x))
            for i, part in zip(index, self.denoiser(x, sigma, cond).split(sizes)):
                outs[i] = part
        return outs


def _rows(v: Tensor, n: int) -> Tensor:
    return v.expand(n, *v.shape[1:]) if v.shape[0] == 1 and n != 1 else v


class _Joined:
    """The model as one run sees it: every attribute is the model's, but denoiser() joins the rounds."""

    def __init__(self, model: Any, rounds: _Rounds, run: int):
        self._model, self._rounds, self._run = model, rounds, run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def denoiser(self, x: Tensor, sigma, cond=None) -> Tensor:
        return self._rounds.call(self._run, x, sigma, cond)


def generate_together(model: Any, runs: Sequence[dict[str, Any]], **common: Any) -> list[Tensor]:
    """[generate(model, **common, **run) for run in runs], computed side by side (see the module doc).
    Runs may differ in anything generate() takes except the model; callbacks run in the run's thread."""
    prompts = common.get("prompts", "")
    negatives = {str(r.get("negative", common.get("negative", ""))) for r in runs}
    if getattr(model, "conditional", False):  # load the encoder and fill its cache before the threads start
        model.encode([prompts] if isinstance(prompts, str) else list(prompts))
        model.encode(sorted(negatives))
    rounds = _Rounds(model.denoiser, len(runs))
    images: list[Tensor | None] = [None] * len(runs)
    errors: list[BaseException] = []

    def one(k: int) -> None:
        try:
            images[k] = generate(_Joined(model, rounds, k), **common, **runs[k])
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(e)
        finally:
            rounds.finish()

    with eval_mode(model):
        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(len(runs))]
        for t in threads:
            t.start()
        rounds.serve()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return images  # type: ignore[return-value]
