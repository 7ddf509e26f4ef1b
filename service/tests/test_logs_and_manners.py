"""Logs an operator can trust, and the HTTP manners of every response: nosniff, Cache-Control, ETags,
CORS only when configured, and input rules that keep names visible."""

import json
import logging
import socket
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from coffee_ranker.app import create_app
from coffee_ranker.logs import JsonFormatter, TextFormatter
from tests.conftest import settings_for
from tests.support import AUTH, PNG_BYTES, multipart, serve_in_thread
from tests.test_api_shops import assert_problem

FORGED_PATH = "/x%0D%0AINFO%20coffee_ranker.access:%20GET%20/admin%20200%200.1ms%1B[2J"


def access_records(caplog) -> list:
    return [record for record in caplog.records if record.name == "coffee_ranker.access"]


def wait_for_access_records(caplog, count: int) -> list:
    deadline = time.monotonic() + 5
    while len(access_records(caplog)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return access_records(caplog)


def raw_get(url: str, path: str) -> None:
    """GET a path exactly as given (httpx would normalise it)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        while connection.recv(65536):
            pass


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_request_path_cannot_forge_a_log_line_or_drive_the_terminal(api_url, caplog):
    with caplog.at_level(logging.INFO, logger="coffee_ranker.access"):
        raw_get(api_url, FORGED_PATH)
        (record,) = wait_for_access_records(caplog, 1)
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert "\\r\\nINFO coffee_ranker.access: GET /admin" in line
    assert json.loads(JsonFormatter().format(record))["message"].count("\n") == 0


def test_an_error_log_escapes_what_the_client_sent():
    try:
        raise ValueError("bad input \x1b[31mred\r\nforged line")
    except ValueError:
        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "failed: %s", ("a\nb",), sys.exc_info()
        )
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert "failed: a\\nb" in line
    assert "\\x1b[31mred\\r\\nforged line" in line


@pytest.mark.parametrize("backend", ["sqlite"])
def test_json_access_lines_carry_method_route_status_duration_and_request_id(aws, tmp_path, storage, caplog):
    settings = settings_for("sqlite", aws, tmp_path, RANKER_LOG_FORMAT="json")
    app = create_app(settings, storage)
    with caplog.at_level(logging.INFO, logger="coffee_ranker.access"), serve_in_thread(app) as url:
        response = httpx.get(f"{url}/shops/{'a' * 32}", headers={"X-Request-ID": "req-12345678"})
        (record,) = wait_for_access_records(caplog, 1)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["method"] == "GET"
    assert entry["route"] == "/shops/{shop_id}"
    assert entry["status"] == 404
    assert entry["duration_ms"] >= 0
    assert entry["request_id"] == "req-12345678" == response.headers["x-request-id"]
    assert entry["level"] == "INFO"


def test_every_response_has_nosniff_a_cache_control_and_a_request_id(client, shop):
    responses = [
        client.get("/healthz"),
        client.get(f"/shops/{shop['id']}"),
        client.get("/nothing-here"),
        client.post("/shops", json={}),  # 401
        client.post("/shops", json={}, headers=AUTH),  # 422
        client.delete("/shops", headers=AUTH),  # 405
        client.post(
            "/shops", content=b"x" * 70000, headers={**AUTH, "Content-Type": "application/json"}
        ),  # 413
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 401, 422, 405, 413]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] in ("no-store", "no-cache")
        assert len(response.headers["x-request-id"]) == 32
    assert responses[0].headers["cache-control"] == "no-store"
    assert responses[1].headers["cache-control"] == "no-cache", "reads may be kept, if revalidated"


@pytest.mark.parametrize("path", ["/shops", "/shops/{id}", "/shops/{id}/photos"])
def test_reads_have_an_etag_and_answer_304_while_unchanged(client, shop, path):
    path = path.format(id=shop["id"])
    first = client.get(path)
    tag = first.headers["etag"]
    assert tag.startswith('"')
    unchanged = client.get(path, headers={"If-None-Match": tag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == tag
    assert client.get(path, headers={"If-None-Match": f'"other", W/{tag}'}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200

    client.put(f"/shops/{shop['id']}/reviews/ann", json={"stars": 5}, headers=AUTH)
    body, content_type = multipart("file", "a.png", "image/png", PNG_BYTES)
    client.post(f"/shops/{shop['id']}/photos", content=body, headers={**AUTH, "Content-Type": content_type})
    changed = client.get(path, headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag


def test_cors_is_off_by_default(client):
    preflight = client.options(
        "/shops", headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    read = client.get("/shops", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in read.headers


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cors_allows_exactly_the_configured_origins(aws, tmp_path, storage):
    settings = settings_for("sqlite", aws, tmp_path, RANKER_CORS_ORIGINS="https://app.example.com")
    with serve_in_thread(create_app(settings, storage)) as url, httpx.Client(base_url=url) as client:
        asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        allowed = client.options("/shops", headers={"Origin": "https://app.example.com", **asked})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        refused = client.options("/shops", headers={"Origin": "https://evil.example", **asked})
        assert "access-control-allow-origin" not in refused.headers
        read = client.get("/shops", headers={"Origin": "https://app.example.com"})
        assert read.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "etag" in read.headers["access-control-expose-headers"].lower()


def test_review_text_accepts_crlf(client, shop):
    response = client.put(
        f"/shops/{shop['id']}/reviews/ann", json={"stars": 4, "text": "Good.\r\nWould return."}, headers=AUTH
    )
    assert response.status_code == 201, response.text
    assert response.json()["text"] == "Good.\r\nWould return."


@pytest.mark.parametrize(
    "name",
    [
        "\u200b\u200b",
        "\u2060",
        "\u3164",
        "\u2800\u2800",
        "\u00ad",
        "Caf\u202ee",
        "\u2066Shop\u2069",
        "\u0301",
    ],
    ids=[
        "zero-width",
        "word-joiner",
        "hangul-filler",
        "braille-blank",
        "soft-hyphen",
        "rlo",
        "isolate",
        "mark",
    ],
)
def test_invisible_names_and_bidi_overrides_are_refused(client, name):
    problem = assert_problem(
        client.post("/shops", json={"name": name, "address": "Main St 1"}, headers=AUTH), 422
    )
    assert problem["errors"][0]["field"] == "name"


def test_a_visible_name_with_a_joiner_is_accepted(client):
    response = client.post(
        "/shops", json={"name": "Caf\u00e9 \U0001f469\u200d\U0001f373", "address": "Main St 1"}, headers=AUTH
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("latitude", ["49.41", True, None, [49.41], {"value": 49.41}])
def test_coordinates_accept_numbers_only(client, latitude):
    body = {"name": "A", "address": "B", "latitude": latitude, "longitude": 8.7}
    assert_problem(client.post("/shops", json=body, headers=AUTH), 422)


def test_integral_coordinates_are_numbers_too(client):
    body = {"name": "A", "address": "B", "latitude": 49, "longitude": 8}
    response = client.post("/shops", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    assert (response.json()["latitude"], response.json()["longitude"]) == (49.0, 8.0)
