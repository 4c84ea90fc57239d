"""`rill serve`: a local web page to type a prompt and watch the image develop (rill.app.serve)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import DEVICE_HELP, UserError, number

HELP = "a local web page: type a prompt, watch x̂0 develop step by step, download the PNG"


def add_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("--port", type=number("int>=1"), default=8765, help="port (default 8765)")
    g.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine "
        "only; any other address requires the random token printed at launch on every request)",
    )
    g.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the page may be opened by (Host header allow-list; repeatable)",
    )
    g.add_argument(
        "--models", help="a folder whose *.safetensors models are offered besides the bundled ones"
    )
    g.add_argument("--out", help="the folder final PNGs are written to (default: a new temporary folder)")
    g.add_argument("--device", help=DEVICE_HELP)
    g.add_argument(
        "--queue", type=number("int>=1"), default=4, help="jobs that may wait (default 4; more: 429)"
    )
    g.add_argument(
        "--timeout", type=number("float"), default=120.0, help="seconds one job may take (default 120)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise UserError("rill serve needs uvicorn and starlette: pip install 'rill[serve]'") from None
    if args.port > 65535:
        raise UserError(f"--port {args.port} is not a TCP port; use 1-65535")
    if args.models and not Path(args.models).is_dir():
        raise UserError(f"--models {args.models!r} is not a folder; pass a folder of .safetensors models")
    from ...inference.generate import pick_device
    from ..common import set_threads
    from ..serve import Settings, create_app

    set_threads()
    settings = Settings(
        host=args.host,
        port=args.port,
        models_dir=Path(args.models) if args.models else None,
        out_dir=Path(args.out) if args.out else None,
        allow_hosts=tuple(args.allow_host),
        device=str(pick_device(args.device)),
        device_flag=args.device or "auto",
        queue_size=args.queue,
        job_timeout=float(args.timeout),
        warm=("digits", "shapes"),
    )
    app = create_app(settings)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown if ':' not in shown else '[' + shown + ']'}:{args.port}/"
    if settings.token:
        url += f"?token={settings.token}"
    print(f"rill serve: open {url}  (models: {', '.join(app.catalog.names())}; PNGs in {settings.out_dir})")
    if settings.token:
        print(
            f"rill serve: listening on {args.host}; every request "
            f"needs the token above; accepted Host names: "
            f"{', '.join(sorted(settings.hosts))} (add more with --allow-host)"
        )
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", server_header=False, proxy_headers=False
    )
    return 0
