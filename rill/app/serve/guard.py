"""The door every request passes (pure ASGI middleware over Starlette's header parsing):

- Host header on the allow-list, else 421 (DNS rebinding: a foreign name resolving to 127.0.0.1);
- the per-launch token (header X-Rill-Token or ?token=) when one is set, else 401;
- state-changing methods: Origin, when sent, must be this server's own ("null" is refused), and
  Sec-Fetch-Site, when sent, must be same-origin or none, else 403 (CSRF, as in ComfyUI CVE-2024-10481);
- a declared body larger than the cap: 413;
- every answer carries no-sniff, no-frame, no-store and a same-origin content policy; no CORS headers, ever.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse

from .settings import Settings

__all__ = ["Guard", "SAFE_METHODS"]

SAFE_METHODS = ("GET", "HEAD")
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    ),
]


def _host_name(host: str) -> tuple[str, str]:
    """('name', 'port') of a Host header value ('[::1]:8765' -> ('[::1]', '8765'))."""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest.lstrip(":")
    name, _, port = host.partition(":")
    return name, port


class Guard:
    def __init__(self, app, settings: Settings) -> None:
        self.app, self.settings = app, settings

    def check(self, scope) -> tuple[int, str] | None:
        s = self.settings
        headers = Headers(scope=scope)
        name, port = _host_name(headers.get("host", ""))
        if name.lower() not in s.hosts or port not in (str(s.port), "" if s.port == 80 else str(s.port)):
            return (
                421,
                f"Host {headers.get('host', '')!r} is not this server; open http://127.0.0.1:{s.port}/",
            )
        if s.token is not None:
            given = (
                headers.get("x-rill-token") or QueryParams(scope.get("query_string", b"")).get("token") or ""
            )
            if not secrets.compare_digest(given.encode(), s.token.encode()):
                return 401, "missing or wrong token: open the URL rill serve printed (it ends in ?token=...)"
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin not in s.origins:
                return 403, f"Origin {origin!r} may not change anything here (only this page may)"
            site = headers.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                return 403, f"Sec-Fetch-Site {site!r}: requests from other sites are refused"
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > s.max_body):
                return 413, f"request body of {length} bytes is over the {s.max_body}-byte cap"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        problem = self.check(scope)
        if problem is not None:
            return await JSONResponse({"error": problem[1]}, status_code=problem[0])(
                scope, receive, send_with_headers
            )
        await self.app(scope, receive, send_with_headers)
