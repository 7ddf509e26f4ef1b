"""What an attacker tries first: big anonymous bodies, forged cursors, odd paths and methods.

Every client mistake is a 4xx problem, answered before the server does work it need not do.
"""

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from coffee_ranker.app import create_app
from coffee_ranker.storage.cursors import CursorCodec, key_from_secret
from tests.conftest import settings_for
from tests.support import AUTH, JPEG_BYTES, WRITE_TOKEN, multipart, serve_in_thread
from tests.test_api_shops import assert_problem

MiB = 1024 * 1024


def send_headers_then_read(url: str, request_head: str, body_prefix: bytes = b"") -> bytes:
    """Send a request's head and the start of its body, then read what the server answers *without*
    sending the rest: an answer proves the server did not wait for (or read) the whole body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(request_head.encode("latin-1") + b"\r\n" + body_prefix)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def head(method: str, path: str, url: str, length: int, *extra: str) -> str:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {urlsplit(url).netloc}",
        f"Content-Length: {length}",
        *extra,
    ]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("path", ["/shops", "/shops/{id}/photos", "/shops/{id}/reviews/mallory"])
def test_an_anonymous_64_mib_write_is_refused_before_its_body_is_read(api_url, shop, path):
    method = "PUT" if "reviews" in path else "POST"
    request = head(
        method,
        path.format(id=shop["id"]),
        api_url,
        64 * MiB,
        "Content-Type: multipart/form-data; boundary=x",
    )
    answer = send_headers_then_read(api_url, request, b"\x00" * 65536)
    assert status_of(answer) == 401, answer[:200]
    assert b"www-authenticate: Bearer" in answer.lower().replace(b"bearer", b"Bearer")


def test_a_declared_64_mib_upload_is_refused_at_once(api_url, shop):
    request = head(
        "POST",
        f"/shops/{shop['id']}/photos",
        api_url,
        64 * MiB,
        f"Authorization: Bearer {WRITE_TOKEN}",
        "Content-Type: multipart/form-data; boundary=x",
    )
    assert status_of(send_headers_then_read(api_url, request)) == 413


def test_a_declared_json_body_over_the_json_cap_is_refused_at_once(api_url):
    request = head(
        "POST",
        "/shops",
        api_url,
        65 * 1024,
        f"Authorization: Bearer {WRITE_TOKEN}",
        "Content-Type: application/json",
    )
    assert status_of(send_headers_then_read(api_url, request)) == 413


def test_a_chunked_json_body_is_cut_off_at_the_json_cap(client):
    def chunks():  # no Content-Length: the cap must hold while the body streams
        yield b'{"name": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'", "address": "x"}'

    response = client.post("/shops", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert "65536 bytes" in assert_problem(response, 413)["detail"]
    assert client.get("/shops").json()["items"] == []


def test_the_json_cap_is_a_setting(backend, aws, tmp_path, storage):
    tight = settings_for(backend, aws, tmp_path, RANKER_MAX_JSON_BYTES="64")
    with serve_in_thread(create_app(tight, storage)) as url:
        body = {"name": "A" * 40, "address": "B" * 40}
        assert_problem(httpx.post(f"{url}/shops", json=body, headers=AUTH), 413)
        assert httpx.post(f"{url}/shops", json={"name": "A", "address": "B"}, headers=AUTH).status_code == 201


def test_bytes_after_the_closing_boundary_count_toward_the_upload_cap(backend, aws, tmp_path, storage, shop):
    limited = settings_for(backend, aws, tmp_path, RANKER_MAX_UPLOAD_BYTES="4096")
    body, content_type = multipart("file", "a.jpg", "image/jpeg", JPEG_BYTES)
    epilogue = b"\r\n" + b"e" * (200 * 1024)  # after the closing boundary: the parser ignores it

    def chunks():
        yield body
        for start in range(0, len(epilogue), 8192):
            yield epilogue[start : start + 8192]

    with serve_in_thread(create_app(limited, storage)) as url:
        response = httpx.post(
            f"{url}/shops/{shop['id']}/photos",
            content=chunks(),
            headers={**AUTH, "Content-Type": content_type},
        )
        assert_problem(response, 413)
        assert httpx.get(f"{url}/shops/{shop['id']}/photos").json()["items"] == []


# -- cursors ---------------------------------------------------------------------------------------


def signed(listing: str, position: dict) -> str:
    """A cursor signed with the service's own key: only its range checks can refuse it."""
    return CursorCodec(key_from_secret(WRITE_TOKEN)).encode(listing, position)


def test_a_cursor_the_service_handed_out_is_accepted(client, shop):
    for user in ("ann", "bob", "cid"):
        client.put(f"/shops/{shop['id']}/reviews/{user}", json={"stars": 4}, headers=AUTH)
    first = client.get(f"/shops/{shop['id']}/reviews", params={"limit": 2}).json()
    second = client.get(f"/shops/{shop['id']}/reviews", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [review["user"] for review in second.json()["items"]] == ["cid"]


@pytest.mark.parametrize(
    "cursor",
    [
        # Unsigned, as cursors used to be: a well-formed position, but nobody signed it.
        "eyJsIjoic2hvcHMiLCJwIjp7ImlkIjoiYSIsIm4iOjAsInMiOjB9fQ",
        signed("shops", {"s": 0, "n": 0, "id": "a"})[:-2] + "AA",  # signature tampered with
        signed("shops", {"s": 2**70, "n": 1, "id": "a"}),  # overflows SQLite's integers
        signed("shops", {"s": -5, "n": 1, "id": "a"}),
        signed("shops", {"s": 1, "n": 2**63, "id": "a"}),
        signed("shops", {"s": 1, "n": 1, "id": "\ud800"}),  # a lone surrogate
        signed("shops", {"s": 1, "n": 1, "id": "a" * 600}),  # longer than any id
        signed("shops", {"s": 1.5, "n": 1, "id": "a"}),
        signed("reviews", {"user": "a"}),  # another listing
        "a.b.c",
        "." * 10,
        "\u00e9t\u00e9",
    ],
    ids=lambda value: value[:16],
)
def test_a_forged_or_out_of_range_shops_cursor_is_a_bad_request(client, shop, cursor):
    assert "cursor" in assert_problem(client.get("/shops", params={"cursor": cursor}), 400)["detail"]


def test_a_cursor_of_another_shops_listing_is_a_bad_request(client, shop):
    other = client.post("/shops", json={"name": "Other", "address": "Elsewhere"}, headers=AUTH).json()
    for user in ("ann", "bob"):
        client.put(f"/shops/{other['id']}/reviews/{user}", json={"stars": 4}, headers=AUTH)
    cursor = client.get(f"/shops/{other['id']}/reviews", params={"limit": 1}).json()["next_cursor"]
    assert cursor is not None
    assert_problem(client.get(f"/shops/{shop['id']}/reviews", params={"cursor": cursor}), 400)
    assert_problem(client.get(f"/shops/{shop['id']}/photos", params={"cursor": cursor}), 400)
    assert_problem(client.get("/shops", params={"cursor": cursor}), 400)


def test_a_photo_cursor_with_a_surrogate_is_a_bad_request(client, shop):
    cursor = signed(f"photos/{shop['id']}", {"t": "\udfff", "id": "a"})
    assert_problem(client.get(f"/shops/{shop['id']}/photos", params={"cursor": cursor}), 400)


# -- methods, paths, redirects ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/shops", "/shops/{id}", "/shops/{id}/reviews", "/shops/{id}/photos"]
)
def test_head_works_wherever_get_does(client, shop, path):
    path = path.format(id=shop["id"])
    got = client.get(path)
    headed = client.head(path)
    assert headed.status_code == got.status_code == 200
    assert headed.content == b""
    assert headed.headers["content-type"] == got.headers["content-type"]
    assert headed.headers["content-length"] == str(len(got.content))


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/shops", "GET, HEAD, POST"),
        ("PATCH", "/shops/{id}", "DELETE, GET, HEAD"),
        ("DELETE", "/shops/{id}/reviews/ann", "PUT"),
        ("POST", "/shops/{id}/reviews", "GET, HEAD"),
        ("PUT", "/shops/{id}/photos", "GET, HEAD, POST"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
def test_a_wrong_method_is_405_with_the_right_allow_header(client, shop, method, path, allow):
    response = client.request(method, path.format(id=shop["id"]), headers=AUTH)
    assert_problem(response, 405)
    assert response.headers["allow"] == allow


def test_no_redirect_is_built_from_the_host_header(client):
    response = client.get("/shops/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert_problem(response, 404)
    assert "location" not in response.headers


def test_a_problem_never_echoes_the_path(client):
    response = client.get("/<script>alert(1)</script>")
    assert "script" not in json.dumps(assert_problem(response, 404))
