"""rill serve in headless Chromium (Debian's /usr/bin/chromium driven by playwright): type a prompt, see at
least three x̂0 previews arrive, download the final PNG, which is the image `rill generate` writes."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: apt-get install -y chromium (Debian) to run the browser test",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="pip install playwright (the browser is Debian's)"
)
uvicorn = pytest.importorskip("uvicorn")

from rill.app.cli import main  # noqa: E402
from rill.app.serve import Settings, create_app  # noqa: E402

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn serving create_app(settings) in a thread, for the length of a `with` block."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = uvicorn.Config(
            create_app(settings), host=settings.host, port=settings.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def launch(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])


def test_type_a_prompt_watch_previews_download_the_png(tmp_path):
    port = free_port()
    settings = Settings(port=port, out_dir=tmp_path / "out", warm=("digits",))
    with Server(settings), sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(accept_downloads=True)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.querySelectorAll('#model option').length >= 2")
        page.fill("#prompt", "a handwritten digit 4")
        page.dispatch_event("#prompt", "change")
        assert page.input_value("#model") == "digits"
        page.select_option("#sampler", "dpmpp_2m")
        page.fill("#nfe", "10")
        page.fill("#guidance", "3")
        page.fill("#seed", "5")
        page.click("#go")
        page.wait_for_selector("#result", timeout=60_000)
        previews = page.locator("img.preview").count()
        assert previews >= 3
        sigmas = page.locator("#previews figcaption").all_inner_texts()
        assert len(sigmas) == previews and sigmas[0] == "σ 80.0"
        assert "done" in page.inner_text("#status")
        with page.expect_download() as info:
            page.click("#download")
        got = tmp_path / "download.png"
        info.value.save_as(got)
        browser.close()
    assert (
        main(
            [
                "generate",
                "a handwritten digit 4",
                "--model",
                "digits",
                "-n",
                "1",
                "--nfe",
                "10",
                "--seed",
                "5",
                "--sampler",
                "dpmpp_2m",
                "--guidance",
                "3",
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    (written,) = (tmp_path / "cli").glob("*seed5.png")
    with Image.open(got) as a, Image.open(written) as b:
        assert a.size == b.size == (8, 8) and a.tobytes() == b.tobytes()


def test_a_page_from_another_origin_cannot_start_a_job(tmp_path):
    """A foreign page's fetch to the server is refused (403 before anything runs, and no CORS to read it)."""
    port, evil = free_port(), free_port()
    settings = Settings(port=port, out_dir=tmp_path / "out")
    with (
        Server(settings) as srv,
        Server(Settings(port=evil, out_dir=tmp_path / "evil")),
        sync_api.sync_playwright() as p,
    ):
        browser = launch(p)
        page = browser.new_page()
        page.goto(f"http://localhost:{evil}/")  # another origin (another port)
        result = page.evaluate(
            """async (url) => { try { const r = await fetch(url, {method: "POST", mode: "no-cors",
                 headers: {"Content-Type": "text/plain"}, body: '{"prompt": "x"}'}); return r.type; }
                 catch (e) { return "blocked: " + e; } }""",
            f"http://127.0.0.1:{port}/api/jobs",
        )
        browser.close()
        assert result in ("opaque",) or result.startswith("blocked")
        assert len(srv.server.config.app.jobs.jobs) == 0  # nothing was queued
