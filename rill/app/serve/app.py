"""The web app of `rill serve` (Starlette; uvicorn serves it). Routes:

GET  /                          the page (static/index.html, static/app.js)
GET  /api/options               models, samplers, caps and defaults
POST /api/jobs                  {"prompt", "negative", "model", "sampler", "nfe", "guidance", "seed", "n"}
                                -> 202 {"id"}; 413 body too large, 422 a bad value, 429 queue full
GET  /api/jobs/{id}/events      server-sent events: queued, step {step, sigma, preview}, done {images},
                                cancelled, timeout, error
POST /api/jobs/{id}/cancel      stop a job
GET  /api/images/{id}.png       a final PNG, by its opaque id (32 hex digits), from the one output folder
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ...core.checks import check_choice, check_int, check_range
from .catalog import Catalog
from .guard import Guard
from .jobs import JobQueue, QueueFull, Request
from .settings import Settings

__all__ = ["create_app", "parse_request"]

_IMAGE = re.compile(r"^([0-9a-f]{32})\.png$")
_JOB = re.compile(r"^[0-9a-f]{32}$")
MAX_SEED = 2**31 - 1
MAX_GUIDANCE = 20.0


def _static(name: str) -> bytes:
    return (resources.files("rill.app.serve") / "static" / name).read_bytes()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def parse_request(body: object, settings: Settings, catalog: Catalog) -> Request:
    """A validated Request from a decoded JSON body, or a ValueError naming the field, value and the cap."""
    from ...samplers import SAMPLERS

    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object like {"prompt": "a handwritten digit 7"}')
    unknown = set(body) - {"prompt", "negative", "model", "sampler", "nfe", "guidance", "seed", "n"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")
    prompt, negative = body.get("prompt", ""), body.get("negative", "")
    for name, text in (("prompt", prompt), ("negative", negative)):
        if not isinstance(text, str):
            raise ValueError(f"{name} must be a string")
        if len(text) > settings.max_prompt:
            raise ValueError(f"{name} has {len(text)} characters; the cap is {settings.max_prompt}")
    model = body.get("model", catalog.names()[0] if catalog.names() else "")
    check_choice("model", model, catalog.names())
    pixels = catalog.pixels(model)
    if pixels == 0 or pixels > settings.max_pixels:
        raise ValueError(f"model {model!r} does not make images of at most {settings.max_pixels} pixels")
    sampler = body.get("sampler", "auto")
    check_choice("sampler", sampler, ["auto", *SAMPLERS])
    nfe = check_int("nfe", body.get("nfe", 16), 1, exact=True)
    check_range("nfe", nfe, 1, settings.max_nfe)
    n = check_int("n (images)", body.get("n", 1), 1, exact=True)
    check_range("n (images)", n, 1, settings.max_batch)
    seed = check_int("seed", body.get("seed", 0), 0, exact=True)
    check_range("seed", seed, 0, MAX_SEED)
    guidance = body.get("guidance")
    if guidance is not None:
        if (
            isinstance(guidance, bool)
            or not isinstance(guidance, (int, float))
            or not math.isfinite(guidance)
        ):
            raise ValueError(f"guidance must be a number, got {guidance!r}")
        check_range("guidance", float(guidance), 0.0, MAX_GUIDANCE)
        guidance = float(guidance)
    return Request(prompt, negative, model, sampler, nfe, guidance, seed, n)


def create_app(settings: Settings | None = None) -> Guard:
    """The ASGI app for one launch: the routes behind the Guard (host, token, origin and size checks)."""
    from ...samplers import SAMPLERS

    settings = settings or Settings()
    catalog = Catalog(settings.models_dir, settings.device)
    jobs = JobQueue(settings, catalog)
    page, script = _static("index.html"), _static("app.js")

    async def index(request: HTTPRequest) -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    async def app_js(request: HTTPRequest) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    async def options(request: HTTPRequest) -> Response:
        return JSONResponse(
            {
                "models": catalog.names(),
                "samplers": ["auto", *SAMPLERS],
                "limits": {
                    "nfe": settings.max_nfe,
                    "n": settings.max_batch,
                    "prompt": settings.max_prompt,
                    "guidance": MAX_GUIDANCE,
                    "seed": MAX_SEED,
                    "body": settings.max_body,
                    "queue": settings.queue_size,
                    "timeout_s": settings.job_timeout,
                },
                "defaults": {"nfe": 16, "seed": 0, "sampler": "auto"},
            }
        )

    async def submit(request: HTTPRequest) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send the job as JSON (Content-Type: application/json)")
        body = b""
        async for chunk in request.stream():  # the cap also holds for bodies without a Content-Length
            body += chunk
            if len(body) > settings.max_body:
                return _error(413, f"request body is over the {settings.max_body}-byte cap")
        try:
            parsed = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            return _error(422, "the body is not valid JSON")
        try:
            req = parse_request(parsed, settings, catalog)
        except ValueError as e:
            return _error(422, str(e))
        try:
            job = jobs.submit(req)
        except QueueFull as e:
            return _error(429, str(e))
        return JSONResponse({"id": job.id}, status_code=202)

    def find(request: HTTPRequest):
        job_id = request.path_params["job"]
        return jobs.get(job_id) if _JOB.match(job_id) else None

    async def events(request: HTTPRequest) -> Response:
        job = find(request)
        if job is None:
            return _error(404, "no such job")

        async def stream():
            sent = 0
            while True:
                pending = job.events[sent:]
                for event in pending:
                    yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
                sent += len(pending)
                if job.finished and sent == len(job.events):
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.02)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def cancel(request: HTTPRequest) -> Response:
        job = find(request)
        if job is None:
            return _error(404, "no such job")
        job.cancel.set()
        return JSONResponse({"id": job.id, "state": job.state})

    async def image(request: HTTPRequest) -> Response:
        match = _IMAGE.match(request.path_params["name"])
        if match is None:
            return _error(404, "no such image")
        root = settings.out_dir.resolve()
        path = root / match.group(0)
        if path.is_symlink() or not path.is_file() or path.resolve().parent != root:
            return _error(404, "no such image")
        return FileResponse(
            path,
            media_type="image/png",
            filename=f"rill-{match.group(1)[:8]}.png",
            content_disposition_type="inline",
        )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.close()

    routes = [
        Route("/", index),
        Route("/app.js", app_js),
        Route("/api/options", options),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}/events", events),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
        Route("/api/images/{name}", image),
    ]
    inner = Starlette(routes=routes, lifespan=lifespan)
    guard = Guard(inner, settings)
    guard.jobs, guard.catalog, guard.settings = jobs, catalog, settings
    return guard
