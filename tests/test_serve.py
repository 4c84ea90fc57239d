"""rill serve over HTTP (Starlette's TestClient): a job streams previews and writes the PNG `rill generate`
writes; every cap answers 413 / 422 / 429 with a message; wrong Host, foreign or null Origin, cross-site
fetches, missing tokens and path traversal are refused; a flood leaves the server answering and nothing
behind."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from rill.app.cli import main  # noqa: E402
from rill.app.common import bundled_path  # noqa: E402
from rill.app.serve import Settings, create_app  # noqa: E402
from rill.inference.generate import generate  # noqa: E402
from rill.model import bundled_model  # noqa: E402
from rill.viz.images import save_png  # noqa: E402

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
DIGIT = {"prompt": "a handwritten digit 7", "model": "digits", "nfe": 6, "seed": 3, "sampler": "euler"}


def client(tmp_path: Path, **kw) -> TestClient:
    settings = Settings(port=PORT, out_dir=tmp_path / "out", **kw)
    return TestClient(create_app(settings), base_url=BASE)


def events(c: TestClient, job: str) -> list[dict]:
    out = []
    with c.stream("GET", f"/api/jobs/{job}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def run_job(c: TestClient, body: dict) -> list[dict]:
    r = c.post("/api/jobs", json=body)
    assert r.status_code == 202, r.text
    return events(c, r.json()["id"])


@pytest.fixture
def c(tmp_path):
    with client(tmp_path) as cl:
        yield cl


def test_a_job_streams_previews_and_gives_the_png_rill_generate_writes(c, tmp_path):
    evs = run_job(c, {**DIGIT, "negative": "the number one", "guidance": 4})
    steps = [e for e in evs if e["type"] == "step"]
    assert len(steps) >= 3
    sigmas = [e["sigma"] for e in steps]
    assert sigmas == sorted(sigmas, reverse=True) and sigmas[0] == pytest.approx(80.0)
    assert all(e["preview"].startswith("data:image/png;base64,") for e in steps)
    done = evs[-1]
    assert done["type"] == "done" and len(done["images"]) == 1
    r = c.get(f"/api/images/{done['images'][0]['id']}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = tmp_path / "got.png"
    got.write_bytes(r.content)
    # the same settings through the `rill generate` command
    cli_out = tmp_path / "cli"
    assert (
        main(
            [
                "generate",
                DIGIT["prompt"],
                "--model",
                "digits",
                "-n",
                "1",
                "--nfe",
                "6",
                "--seed",
                "3",
                "--sampler",
                "euler",
                "--guidance",
                "4",
                "--negative",
                "the number one",
                "--out",
                str(cli_out),
                "--scale",
                "1",
            ]
        )
        == 0
    )
    (written,) = cli_out.glob("*seed3.png")  # the command's own naming (prompt slug, seed)
    assert written.read_bytes() == r.content  # byte for byte, the settings chunks included
    with Image.open(got) as a, Image.open(written) as b:
        assert a.size == b.size == (8, 8) and a.mode == b.mode
        assert a.tobytes() == b.tobytes()  # pixel for pixel
    # and pixel for pixel what rill.viz.images writes for rill.inference.generate's image
    image = generate(
        bundled_model("digits"),
        DIGIT["prompt"],
        negative="the number one",
        nfe=6,
        seed=3,
        sampler="euler",
        guidance=4.0,
    )
    with Image.open(save_png(image[0], tmp_path / "direct.png")) as a, Image.open(got) as b:
        assert a.tobytes() == b.tobytes()


def test_page_and_options_with_safe_headers_and_no_cors(c):
    page = c.get("/", headers={"Origin": "https://evil.example"})
    assert page.status_code == 200 and "rill serve" in page.text
    assert "access-control-allow-origin" not in {k.lower() for k in page.headers}
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/app.js").status_code == 200
    opts = c.get("/api/options").json()
    assert opts["models"][:2] == ["digits", "shapes"] and "euler" in opts["samplers"]
    pre = c.options(
        "/api/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert pre.status_code in (403, 405) and "access-control-allow-origin" not in {
        k.lower() for k in pre.headers
    }


@pytest.mark.parametrize(
    "change, status, words",
    [
        ({"nfe": 101}, 422, "nfe=101 must be in [1, 100]"),
        ({"nfe": 2.5}, 422, "nfe must be a positive integer"),
        ({"n": 5}, 422, "n (images)=5 must be in [1, 4]"),
        ({"prompt": "x" * 301}, 422, "the cap is 300"),
        ({"negative": 7}, 422, "negative must be a string"),
        ({"guidance": 21}, 422, "guidance=21.0 must be in [0.0, 20.0]"),
        ({"guidance": "NaN"}, 422, "guidance must be a number"),
        ({"seed": -1}, 422, "seed must be a non-negative integer"),
        ({"seed": 2**31}, 422, "seed=2147483648"),
        ({"sampler": "warp"}, 422, "sampler='warp' is not allowed"),
        ({"model": "../rill/assets/digits"}, 422, "model='../rill/assets/digits' is not allowed"),
        ({"model": "/etc/passwd"}, 422, "is not allowed"),
        ({"path": "x"}, 422, "unknown field(s) ['path']"),
    ],
)
def test_every_cap_and_check_answers_with_a_message(c, change, status, words):
    r = c.post("/api/jobs", json={**DIGIT, **change})
    assert r.status_code == status and words in r.json()["error"], r.text


def test_body_caps_and_content_type(c):
    big = json.dumps({**DIGIT, "prompt": "x" * 9000})
    r = c.post("/api/jobs", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "8192-byte cap" in r.json()["error"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        for _ in range(20):
            yield b" " * 1000

    r = c.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = c.post("/api/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    r = c.post("/api/jobs", content=json.dumps(DIGIT), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415  # a cross-site <form> cannot send application/json without a preflight
    r = c.post("/api/jobs", json=[1, 2])
    assert r.status_code == 422 and "JSON object" in r.json()["error"]


def test_resolution_cap(tmp_path):
    with client(tmp_path, max_pixels=32) as cl:
        r = cl.post("/api/jobs", json=DIGIT)
        assert r.status_code == 422 and "at most 32 pixels" in r.json()["error"]


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "127.0.0.1:9999", "localhost.evil:8765", ""]
)
def test_a_wrong_host_is_refused(c, host):
    r = c.get("/api/options", headers={"Host": host})
    assert r.status_code == 421 and "not this server" in r.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # sandboxed iframes and file:// pages: ComfyUI's bypass
        {"Origin": "http://127.0.0.1:9999"},  # another local port is another origin
        {"Origin": "http://localhost.evil:8765"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": BASE, "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_state_changing_requests_from_elsewhere_are_refused(c, headers):
    for path in ("/api/jobs", "/api/jobs/" + "0" * 32 + "/cancel"):
        r = c.post(path, json=DIGIT, headers=headers)
        assert r.status_code == 403, (path, r.text)
    assert c.get("/api/options", headers=headers).status_code == 200  # reading is not changing


def test_own_origin_may_submit(c):
    for origin in (BASE, f"http://localhost:{PORT}"):
        r = c.post("/api/jobs", json=DIGIT, headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 202


def test_another_host_requires_the_token_on_every_request(tmp_path):
    settings = Settings(host="0.0.0.0", port=PORT, out_dir=tmp_path / "out", allow_hosts=("box.lan",))
    assert settings.token and len(settings.token) >= 24
    assert Settings(host="0.0.0.0", port=PORT, out_dir=tmp_path / "o2").token != settings.token  # per launch
    assert Settings(port=PORT, out_dir=tmp_path / "o3").token is None  # loopback: no token needed
    with TestClient(create_app(settings), base_url=f"http://box.lan:{PORT}") as cl:
        for path in ("/", "/app.js", "/api/options", "/api/images/" + "a" * 32 + ".png"):
            assert cl.get(path).status_code == 401, path
            assert cl.get(path, headers={"X-Rill-Token": "wrong"}).status_code == 401
        assert cl.post("/api/jobs", json=DIGIT).status_code == 401
        assert cl.get("/api/options", headers={"X-Rill-Token": settings.token}).status_code == 200
        assert cl.get(f"/?token={settings.token}").status_code == 200
        r = cl.get("/api/options", headers={"X-Rill-Token": settings.token, "Host": "evil.example:8765"})
        assert r.status_code == 421  # the token does not replace the Host check
        evs = run_job_token(cl, settings.token)
        assert evs[-1]["type"] == "done"


def run_job_token(cl: TestClient, token: str) -> list[dict]:
    r = cl.post(f"/api/jobs?token={token}", json=DIGIT)
    assert r.status_code == 202
    out = []
    with cl.stream("GET", f"/api/jobs/{r.json()['id']}/events?token={token}") as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def test_path_traversal_is_refused(c, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    out = tmp_path / "out"
    link = "b" * 32 + ".png"
    (out / link).symlink_to(secret)
    (out / "notes.txt").write_text("x")
    for path in [
        "/api/images/../secret.png",
        "/api/images/..%2fsecret.png",
        "/api/images/..%2Fsecret.png",
        "/api/images/%2e%2e%2fsecret.png",
        "/api/images/%2e%2e/secret.png",
        "/api/images/....//secret.png",
        "/api/images/..%5csecret.png",
        f"/api/images/{link}",  # a symlink inside the folder, pointing out of it
        "/api/images/notes.txt",
        "/api/images/" + "A" * 32 + ".png",
        "/api/images/" + "a" * 32 + ".png",  # well-formed, but no such image
        "/api/images/%00.png",
        "/static/../../etc/passwd",
        "/api/jobs/../../etc/passwd/events",
    ]:
        r = c.get(path)
        assert r.status_code == 404, path
        assert b"secret" not in r.content


def test_cancel_and_timeout(tmp_path):
    with client(tmp_path) as cl:
        r = cl.post("/api/jobs", json={**DIGIT, "nfe": 100, "sampler": "euler"})
        job = r.json()["id"]
        seen = []
        with cl.stream("GET", f"/api/jobs/{job}/events") as resp:
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["type"] == "step" and len(seen) == 3:
                        assert cl.post(f"/api/jobs/{job}/cancel").status_code == 200
        assert seen[-1]["type"] == "cancelled"
        assert sum(e["type"] == "step" for e in seen) < 50
        assert not list((tmp_path / "out").glob("*.png"))
    with client(tmp_path / "t", job_timeout=0.2) as cl:
        evs = run_job(cl, {**DIGIT, "nfe": 100})
        assert evs[-1]["type"] == "timeout" and "timeout" in evs[-1]["message"]


def test_a_flood_is_held_by_the_queue_and_leaves_nothing_behind(tmp_path):
    baseline = threading.active_count()
    with client(tmp_path, queue_size=2, keep_jobs=3) as cl:
        codes, ids = [], []
        for k in range(40):
            r = cl.post("/api/jobs", json={**DIGIT, "nfe": 40, "seed": k})
            codes.append(r.status_code)
            if r.status_code == 202:
                ids.append(r.json()["id"])
            else:
                assert r.status_code == 429 and "already waiting" in r.json()["error"]
        assert 2 <= codes.count(202) <= 3 and codes.count(429) >= 37
        t0 = time.perf_counter()
        assert cl.get("/api/options").status_code == 200  # still answering while the queue is full
        assert time.perf_counter() - t0 < 1.0
        for job in ids:
            cl.post(f"/api/jobs/{job}/cancel")
        for job in ids:
            assert events(cl, job)[-1]["type"] in ("cancelled", "done")
        for k in range(5):  # more work after the flood; old jobs are forgotten, their PNGs deleted
            assert run_job(cl, {**DIGIT, "seed": 100 + k})[-1]["type"] == "done"
        app = cl.app
        assert len(app.jobs.jobs) <= 4  # keep_jobs, plus the one whose last event was just read
        until = time.time() + 5
        while len(app.jobs.jobs) > 3 and time.time() < until:
            time.sleep(0.02)
        assert len(app.jobs.jobs) <= 3
        assert len(list((tmp_path / "out").iterdir())) <= 3
        assert threading.active_count() <= baseline + 3  # the worker (and the test client's loop)
    deadline = time.time() + 10
    while threading.active_count() > baseline and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= baseline  # the worker stopped with the app


def test_models_only_from_the_launch_folder_and_only_safetensors(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "mine.safetensors").write_bytes(bundled_path("digits").read_bytes())
    (models / "pickled.safetensors").write_bytes(b"\x80\x04\x95 not a model")  # a pickle renamed
    (models / "other.pt").write_bytes(b"\x80\x04")
    (models / "linked.safetensors").symlink_to(bundled_path("shapes"))
    sub = models / "sub"
    sub.mkdir()
    (sub / "deep.safetensors").write_bytes(bundled_path("digits").read_bytes())
    with client(tmp_path, models_dir=models) as cl:
        assert cl.get("/api/options").json()["models"] == ["digits", "shapes", "emoji", "mine"]
        assert run_job(cl, {**DIGIT, "model": "mine"})[-1]["type"] == "done"
        for name in ("pickled", "other", "linked", "deep", "sub/deep", "mine.safetensors"):
            assert cl.post("/api/jobs", json={**DIGIT, "model": name}).status_code == 422, name


def test_the_command_refuses_bad_flags_in_one_line(tmp_path, capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "is not a TCP port" in capsys.readouterr().err
    assert main(["serve", "--models", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
