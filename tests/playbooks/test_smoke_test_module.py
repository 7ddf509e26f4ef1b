"""The smoke-test module of playbooks/verify.yml against a stand-in API on loopback.

The stand-in records what it was sent, so the tests check the requests (token, JSON, the photo's raw
bytes in the multipart part) as well as each way the module must fail. The real API is exercised by the
same module in molecule `site` and tests/playbooks/test_failures.py.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MODULE_PATH = Path(__file__).resolve().parents[2] / "playbooks" / "library" / "ranker_smoke_test.py"
spec = importlib.util.spec_from_file_location("ranker_smoke_test", MODULE_PATH)
smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(smoke)

TOKEN = "write-token-for-tests"


class StandInApi(ThreadingHTTPServer):
    """Answers like the API; `answers` overrides the status of a route, `served` the public photo's bytes."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.answers: dict[str, int] = {}
        self.photo: bytes | None = None
        self.served: bytes | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: StandInApi

    def log_message(self, *args) -> None:
        pass

    def answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(self.server.answers.get(self.path, status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, dict(self.headers), b""))
        if self.path == "/healthz":
            self.answer(200, b'{"status": "ok"}')
        elif self.path == "/media/shops/s1/p1.png":
            served = self.server.served if self.server.served is not None else self.server.photo
            self.answer(200, served or b"", "image/png")
        else:
            self.answer(404, b'{"title": "Not Found"}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(("POST", self.path, dict(self.headers), body))
        if self.path == "/shops":
            self.answer(201, b'{"id": "s1"}')
        elif self.path == "/shops/s1/photos":
            boundary = self.headers["Content-Type"].split("boundary=", 1)[1].encode()
            part = body.split(b"--" + boundary)[1]
            self.server.photo = part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
            url = f"{self.server.url}/media/shops/s1/p1.png"
            self.answer(201, json.dumps({"id": "p1", "url": url}).encode())
        else:
            self.answer(404, b'{"title": "Not Found"}')


@pytest.fixture
def api():
    server = StandInApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run(api: StandInApi, check_mode: bool = False) -> dict:
    return smoke.smoke_test(api.url, TOKEN, "Smoke test", "Somewhere", 5, check_mode=check_mode)


def test_stores_the_photo_and_fetches_it_anonymously(api):
    created = run(api)

    assert created == {"shop_id": "s1", "photo_url": f"{api.url}/media/shops/s1/p1.png"}
    (_, _, shop_headers, shop_body), (_, _, photo_headers, _) = [r for r in api.requests if r[0] == "POST"]
    assert shop_headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(shop_body) == {"name": "Smoke test", "address": "Somewhere"}
    assert photo_headers["Authorization"] == f"Bearer {TOKEN}"
    assert api.photo == smoke.PHOTO  # the part carries the raw PNG, not base64
    fetch = [r for r in api.requests if r[1] == "/media/shops/s1/p1.png"]
    assert len(fetch) == 1
    assert "Authorization" not in fetch[0][2]


def test_check_mode_only_asks_healthz(api):
    assert run(api, check_mode=True) == {}
    assert [(method, path) for method, path, _, _ in api.requests] == [("GET", "/healthz")]


@pytest.mark.parametrize(
    ("route", "status", "message"),
    [
        ("/healthz", 503, "GET /healthz answered 503 (expected 200)"),
        ("/shops", 401, "POST /shops answered 401 (expected 201)"),
        ("/shops/s1/photos", 415, "POST /shops/s1/photos answered 415 (expected 201)"),
        ("/media/shops/s1/p1.png", 403, "(the photo's public URL) answered 403"),
    ],
)
def test_a_failing_step_is_named_with_its_answer(api, route, status, message):
    api.answers[route] = status
    with pytest.raises(smoke.SmokeTestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(api)


def test_a_reencoded_photo_of_the_same_size_passes(api):
    # The API re-encodes uploads (metadata dropped): other bytes, the same 1x1 PNG. Here a text chunk
    # stands in for what a re-encoding changes.
    text_chunk = bytes.fromhex("00000007") + b"tEXtk\x00value" + bytes(4)
    api.served = smoke.PHOTO[:33] + text_chunk + smoke.PHOTO[33:]
    assert api.served != smoke.PHOTO

    assert run(api)["shop_id"] == "s1"


@pytest.mark.parametrize(
    "served",
    [
        b"\x89PNG not the same",
        b"<html>a page, not the photo</html>",
        # A PNG of another size (2x1).
        bytes.fromhex("89504e470d0a1a0a0000000d49484452000000020000000108060000001f15c489"),
    ],
    ids=["truncated", "html", "other-size"],
)
def test_something_else_at_the_public_url_fails(api, served):
    api.served = served
    with pytest.raises(smoke.SmokeTestError, match="something else than the uploaded photo"):
        run(api)


def test_an_unreachable_api_fails_clearly():
    with pytest.raises(smoke.SmokeTestError, match=r"GET http://127.0.0.1:9/healthz failed"):
        smoke.smoke_test("http://127.0.0.1:9", TOKEN, "Smoke test", "Somewhere", 2)


def test_only_http_urls_are_accepted():
    with pytest.raises(smoke.SmokeTestError, match="base_url must be an http"):
        smoke.smoke_test("file:///etc/passwd", TOKEN, "Smoke test", "Somewhere", 2)
