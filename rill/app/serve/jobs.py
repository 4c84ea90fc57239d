"""Jobs: a bounded queue served by one worker thread. A job generates with rill.inference.generate, streams an
x̂0 preview and σ at every step (events read by the page over server-sent events), can be cancelled, stops at
its timeout, and writes its PNGs with rill.viz.images into the one output folder under opaque ids."""

from __future__ import annotations

import base64
import io
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .catalog import Catalog
from .settings import Settings

__all__ = ["Job", "JobQueue", "QueueFull", "Request"]


class QueueFull(Exception):
    pass


class _Stop(Exception):
    """Raised inside the sampler's callback to end a cancelled or timed-out job."""


@dataclass(frozen=True)
class Request:
    """One job's settings, already validated (rill.app.serve.app.parse_request)."""

    prompt: str
    negative: str = ""
    model: str = "digits"
    sampler: str = "auto"
    nfe: int = 16
    guidance: float | None = None
    seed: int = 0
    n: int = 1


@dataclass
class Job:
    request: Request
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"  # queued | running | done | cancelled | timeout | error
    events: list[dict[str, Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # ids of the PNGs in the output folder
    cancel: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "timeout", "error")

    def emit(self, kind: str, **data: Any) -> None:
        self.events.append({"type": kind, **data})  # list.append is atomic; readers only read up to a length


def _preview_png(x0, scale: int) -> str:
    from ...viz.images import to_pil

    buf = io.BytesIO()
    to_pil(x0.clamp(-1, 1), scale).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class JobQueue:
    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings, self.catalog = settings, catalog
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=settings.queue_size)
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="rill-serve-worker", daemon=True)
        self._worker.start()

    def submit(self, request: Request) -> Job:
        job = Job(request)
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(
                    f"{self.settings.queue_size} jobs are already waiting; try again shortly"
                ) from None
            self.jobs[job.id] = job
            self._forget_old()
        job.emit("queued", position=self._queue.qsize())
        return job

    def _forget_old(self) -> None:
        """Keep at most keep_jobs finished jobs; delete the PNGs of the ones forgotten."""
        finished = [j for j in self.jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - self.settings.keep_jobs)]:
            for image in job.images:
                (self.settings.out_dir / f"{image}.png").unlink(missing_ok=True)
            del self.jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def close(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel.set()
        self._queue.put(None)  # blocks only until the worker takes its next item
        self._worker.join(timeout=10)

    def _warm(self) -> None:
        from ...inference.generate import generate

        for name in self.settings.warm:
            if name in self.catalog.paths:
                try:
                    generate(self.catalog.load(name), "", nfe=1)  # loads the weights and the text encoder
                except Exception as e:  # a model that cannot load is reported by the job that asks for it
                    print(f"rill serve: could not warm up {name!r}: {e}")

    def _run(self) -> None:
        self._warm()
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancel.is_set():
                job.state = "cancelled"
                job.emit("cancelled")
                continue
            job.state = "running"
            try:
                self._generate(job)
                job.state = "done"
            except _Stop as stop:
                job.state = str(stop)
                why = (
                    "cancelled"
                    if job.state == "cancelled"
                    else f"stopped at its {self.settings.job_timeout:g} s timeout"
                )
                job.emit(job.state, message=f"the job was {why}")
            except Exception as e:  # one line to the page; the server keeps serving
                job.state = "error"
                job.emit("error", message=f"{type(e).__name__}: {e}")
            finally:
                with self._lock:
                    self._forget_old()

    def _generate(self, job: Job) -> None:
        from ...inference.generate import generate
        from ...viz.images import save_png
        from ..outputs import image_settings, png_text

        r, s = job.request, self.settings
        t0 = time.monotonic()
        deadline = t0 + s.job_timeout
        model = self.catalog.load(r.model)
        scale = max(1, 128 // int(model.config.shape[-1]))

        def check() -> None:
            if job.cancel.is_set():
                raise _Stop("cancelled")
            if time.monotonic() > deadline:
                raise _Stop("timeout")

        def on_step(step: int, x, sigma: float, x0_hat) -> None:
            check()
            if step % s.preview_every == 0:
                job.emit(
                    "step",
                    step=step,
                    sigma=float(sigma),
                    preview=_preview_png(x0_hat[0].float().cpu(), scale),
                    seconds=round(time.monotonic() - t0, 3),
                )

        check()
        images = generate(
            model,
            r.prompt,
            negative=r.negative,
            n=r.n,
            nfe=r.nfe,
            sampler=r.sampler,
            guidance=r.guidance,
            seed=r.seed,
            callback=on_step,
        )
        settings = image_settings(
            prompt=r.prompt, negative=r.negative, seed=r.seed, sampler=r.sampler, nfe=r.nfe,
            guidance=r.guidance, sigma_min=None, sigma_max=None, spec=r.model,
            path=self.catalog.paths[r.model], model=model, device=s.device_flag,
        )  # fmt: skip
        for j, img in enumerate(images):  # the settings chunks `rill generate` writes, so the bytes match
            image_id = uuid.uuid4().hex
            save_png(img, s.out_dir / f"{image_id}.png", text=png_text({**settings, "seed": r.seed + j}))
            job.images.append(image_id)
        job.emit(
            "done",
            images=[{"id": i, "seed": r.seed + j} for j, i in enumerate(job.images)],
            seconds=round(time.monotonic() - t0, 3),
        )
