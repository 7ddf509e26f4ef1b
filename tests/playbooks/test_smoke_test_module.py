"""The smoke-test module of playbooks/verify.yml against a stand-in API on loopback, then against the
real API on the embedded AWS.

The stand-in records what it was sent, so the tests check the requests (token, JSON, the photo's raw
bytes in the multipart part, the final DELETE) as well as each way the module must fail, and that it
cleans up after every one of them. The real API (DynamoDB and a versioned bucket, as deployed) shows
that nothing is left in the table or the bucket, not even a noncurrent version of the photo. The
module also runs in molecule `site` and tests/playbooks/test_booted_stack.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

MODULE_PATH = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "ranker_smoke_test.py"
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

    def do_DELETE(self) -> None:
        self.server.requests.append(("DELETE", self.path, dict(self.headers), b""))
        if self.path == "/shops/s1":
            self.answer(204, b"")
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
            self.answer(201, json.dumps({"id": "p1", "key": "media/shops/s1/p1.png", "url": url}).encode())
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

    assert created == {
        "shop_id": "s1",
        "photo_url": f"{api.url}/media/shops/s1/p1.png",
        "photo_key": "media/shops/s1/p1.png",
        "cleaned_up": {"shop": True, "photo_versions": 0},  # no bucket given: no version purge
    }
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


def test_the_shop_is_deleted_with_the_token_at_the_end(api):
    run(api)

    method, path, headers, _ = api.requests[-1]
    assert (method, path) == ("DELETE", "/shops/s1")
    assert headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("route", "status", "message"),
    [
        ("/shops/s1/photos", 503, "POST /shops/s1/photos answered 503 (expected 201)"),
        ("/media/shops/s1/p1.png", 404, "(the photo's public URL) answered 404"),
        ("/media/shops/s1/p1.png", 403, "(the photo's public URL) answered 403"),
    ],
)
def test_a_step_failing_after_the_shop_was_created_still_deletes_it(api, route, status, message):
    api.answers[route] = status
    with pytest.raises(smoke.SmokeTestError) as failed:
        run(api)

    assert message in str(failed.value)
    assert "left behind" not in str(failed.value)
    assert failed.value.result["cleaned_up"] == {"shop": True, "photo_versions": 0}
    assert [(method, path) for method, path, _, _ in api.requests if method == "DELETE"] == [("DELETE", "/shops/s1")]


def test_nothing_is_deleted_when_no_shop_was_created(api):
    api.answers["/shops"] = 503
    with pytest.raises(smoke.SmokeTestError, match=r"POST /shops answered 503"):
        run(api)
    assert [method for method, _, _, _ in api.requests] == ["GET", "POST"]


@pytest.mark.parametrize("failing_fetch", [False, True], ids=["after-a-pass", "after-a-failed-fetch"])
def test_a_failed_cleanup_names_what_is_left_behind(api, failing_fetch):
    api.answers["/shops/s1"] = 503
    if failing_fetch:
        api.answers["/media/shops/s1/p1.png"] = 404
    with pytest.raises(smoke.SmokeTestError) as failed:
        run(api)

    message = str(failed.value)
    first = f"GET {api.url}/media/shops/s1/p1.png (the photo's public URL) answered 404"
    assert message.startswith(first if failing_fetch else "The smoke test passed")
    assert "left behind: shop s1 (DELETE /shops/s1 answered 503" in message
    assert f"curl -X DELETE -H 'Authorization: Bearer <token>' {api.url}/shops/s1" in message
    assert TOKEN not in message
    assert failed.value.result["cleaned_up"] == {"shop": False, "photo_versions": 0}


# The real API as deployed: DynamoDB, and a versioned bucket whose media/ prefix is public.


@pytest.fixture
def bucket(aws) -> str:
    name = f"media-{uuid.uuid4().hex[:12]}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    public_media = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{name}/media/*",
    }
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [public_media]}))
    # As on AWS (and in the embedded AWS's unkind mode), a new bucket policy reaches anonymous readers a
    # moment later: wait until a probe under media/ is public, then remove every version of it.
    probe = s3.put_object(Bucket=name, Key="media/probe", Body=b"probe")
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{aws.endpoint}/{name}/media/probe", timeout=5).close()
            break
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline, "the bucket policy never reached anonymous readers"
            time.sleep(0.5)
    s3.delete_object(Bucket=name, Key="media/probe", VersionId=probe["VersionId"])
    return name


@contextlib.contextmanager
def serve(app):
    """The app on uvicorn in a thread, on a free loopback port; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def real_api(aws, bucket, monkeypatch):
    """The API on DynamoDB and the versioned bucket of the embedded AWS; yields (base URL, table)."""
    from coffee_ranker.app import create_app
    from coffee_ranker.settings import Settings

    # The service's boto3 default chain: the embedded AWS's dummy keys, nothing from this machine.
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    table = f"data-{uuid.uuid4().hex[:12]}"
    aws.client("dynamodb").create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    settings = Settings.from_env(
        {
            "RANKER_BUCKET": bucket,
            "RANKER_AWS_REGION": "us-east-1",
            "RANKER_WRITE_TOKEN": TOKEN,
            "RANKER_S3_ENDPOINT_URL": aws.endpoint,
            "RANKER_DYNAMODB_TABLE": table,
            "RANKER_DYNAMODB_ENDPOINT_URL": aws.endpoint,
        }
    )
    with serve(create_app(settings)) as url:
        yield url, table


def data_items(aws, table: str) -> list:
    """Every item of the table but the schema version the service records when it opens it."""
    from coffee_ranker.storage.dynamodb import SCHEMA_PK

    items = aws.client("dynamodb").scan(TableName=table)["Items"]
    return [item for item in items if item["pk"] != {"S": SCHEMA_PK}]


def left_in(aws, table: str, bucket: str) -> dict:
    """Every data item of the table, and every version and delete marker of the bucket."""
    versions = aws.client("s3").list_object_versions(Bucket=bucket)
    return {
        "items": data_items(aws, table),
        "versions": [entry["Key"] for kind in ("Versions", "DeleteMarkers") for entry in versions.get(kind, [])],
    }


def test_a_passing_run_leaves_nothing_in_the_table_or_the_bucket(aws, bucket, real_api):
    url, table = real_api
    result = smoke.smoke_test(url, TOKEN, "Smoke test", "Somewhere", 10, bucket=bucket, s3=aws.client("s3"))

    assert result["photo_key"].endswith(".png")
    # The API's delete left the photo as a noncurrent version behind a delete marker: both purged.
    assert result["cleaned_up"] == {"shop": True, "photo_versions": 2}
    assert left_in(aws, table, bucket) == {"items": [], "versions": []}


def test_a_refused_public_fetch_still_leaves_nothing(aws, bucket, real_api):
    url, table = real_api
    aws.client("s3").delete_bucket_policy(Bucket=bucket)  # photos are no longer public
    with pytest.raises(smoke.SmokeTestError, match=r"\(the photo's public URL\) answered 403") as failed:
        smoke.smoke_test(url, TOKEN, "Smoke test", "Somewhere", 10, bucket=bucket, s3=aws.client("s3"))

    assert "left behind" not in str(failed.value)
    assert failed.value.result["cleaned_up"] == {"shop": True, "photo_versions": 2}
    assert left_in(aws, table, bucket) == {"items": [], "versions": []}


def test_without_the_bucket_the_photos_old_version_stays(aws, bucket, real_api):
    url, table = real_api
    result = smoke.smoke_test(url, TOKEN, "Smoke test", "Somewhere", 10)

    assert result["cleaned_up"] == {"shop": True, "photo_versions": 0}
    assert left_in(aws, table, bucket) == {"items": [], "versions": [result["photo_key"]] * 2}


def test_a_failed_purge_names_the_key_left_behind(aws, real_api):
    url, table = real_api
    with pytest.raises(smoke.SmokeTestError, match="left behind: versions of s3://no-such-bucket/media/") as failed:
        smoke.smoke_test(url, TOKEN, "Smoke test", "Somewhere", 10, bucket="no-such-bucket", s3=aws.client("s3"))

    assert str(failed.value).startswith("The smoke test passed")
    assert failed.value.result["photo_key"] in str(failed.value)
    assert failed.value.result["cleaned_up"] == {"shop": True, "photo_versions": 0}
    assert data_items(aws, table) == []


@pytest.mark.parametrize(
    "url",
    [
        "{endpoint}/{bucket}/media/shops/abc/p%201.png",
        "https://{bucket}.s3.us-east-1.amazonaws.com/media/shops/abc/p%201.png",
        "https://cdn.example.org/photos/media/shops/abc/p%201.png",
    ],
    ids=["path-style", "virtual-hosted", "cdn"],
)
def test_the_key_is_found_from_the_url_whatever_its_shape(aws, bucket, url):
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="media/shops/abc/p 1.png", Body=smoke.PHOTO)
    s3.delete_object(Bucket=bucket, Key="media/shops/abc/p 1.png")  # as the API leaves it

    assert smoke.key_from_url(s3, bucket, url.format(endpoint=aws.endpoint, bucket=bucket)) == "media/shops/abc/p 1.png"
    assert smoke.key_from_url(s3, bucket, "https://cdn.example.org/media/shops/abc/other.png") is None
