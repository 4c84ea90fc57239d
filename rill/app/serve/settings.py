"""What one `rill serve` launch allows: where it listens, who may call it, and the caps on every request."""

from __future__ import annotations

import ipaddress
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "LOOPBACK_NAMES", "is_loopback"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    """A launch's settings (rill serve --help names each flag). The caps answer 413 (body) or 422 (values)."""

    host: str = "127.0.0.1"
    port: int = 8765
    models_dir: Path | None = (
        None  # extra models: *.safetensors directly in this folder (besides the bundled)
    )
    out_dir: Path | None = (
        None  # the one folder final PNGs are written to and served from (default: a temp dir)
    )
    token: str | None = None  # required on every request when set (always set off loopback)
    allow_hosts: tuple[str, ...] = ()  # extra Host header names accepted (DNS-rebinding allow-list)
    device: str = "cpu"
    device_flag: str = "auto"  # --device as given ("auto" if none), recorded in the PNGs like rill generate
    max_body: int = 8192  # bytes of a request body
    max_nfe: int = 100
    max_batch: int = 4  # images per job
    max_pixels: int = 256 * 256  # per image: larger models are refused
    max_prompt: int = 300  # characters of a prompt / negative prompt
    queue_size: int = 4  # jobs waiting (the running one not counted): more answer 429
    job_timeout: float = 120.0  # seconds from start to finish of one job
    keep_jobs: int = 32  # finished jobs (and their PNGs) kept; older ones are deleted
    preview_every: int = 1  # a preview every N steps
    warm: tuple[str, ...] = ()  # models loaded (and run once) at launch, so the first preview comes fast
    hosts: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and self.token is None:
            self.token = secrets.token_urlsafe(24)  # another host: a random per-launch token, always
        self.hosts = set(LOOPBACK_NAMES) | set(self.allow_hosts)
        if self.host not in ("0.0.0.0", "::", ""):
            self.hosts.add(self.host)
        if self.out_dir is None:
            self.out_dir = Path(tempfile.mkdtemp(prefix="rill-serve-"))
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    @property
    def origins(self) -> set[str]:
        """Origins a state-changing request may come from: this server's own, by every allowed host name."""
        ports = [f":{self.port}"] + ([""] if self.port == 80 else [])
        names = {h if not (":" in h and not h.startswith("[")) else f"[{h}]" for h in self.hosts}
        return {f"http://{h}{p}" for h in names for p in ports}
