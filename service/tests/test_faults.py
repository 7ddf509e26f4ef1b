"""Dependencies fail: every S3 or DynamoDB error is a 503 with Retry-After (never a 500, never the
AWS message), and a client that walks away mid-upload is logged as such, not as a server error."""

import logging
import time

import httpx
import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError

from coffee_ranker.app import create_app
from coffee_ranker.storage.factory import Storage
from coffee_ranker.storage.s3 import S3ObjectStore
from tests.support import (
    AUTH,
    BUCKET,
    JPEG_BYTES,
    REGION,
    free_port,
    multipart,
    serve_in_thread,
    unfinished_upload,
)
from tests.test_api_shops import assert_problem


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"secret detail about {code}"}}, operation)


def upload(url: str, shop_id: str) -> httpx.Response:
    body, content_type = multipart("file", "a.jpg", "image/jpeg", JPEG_BYTES)
    return httpx.post(
        f"{url}/shops/{shop_id}/photos",
        content=body,
        headers={**AUTH, "Content-Type": content_type},
        timeout=60,
    )


def assert_unavailable(response: httpx.Response) -> None:
    problem = assert_problem(response, 503)
    assert response.headers["retry-after"].isdigit()
    assert "secret detail" not in response.text
    assert "amazonaws" not in problem["detail"]


@pytest.mark.parametrize(
    "failure",
    [
        S3UploadFailedError("Failed to upload: An error occurred (AccessDenied): secret detail"),
        client_error("AccessDenied", "PutObject"),
        client_error("SlowDown", "PutObject"),
        EndpointConnectionError(endpoint_url="http://secret detail"),
    ],
    ids=["upload-failed", "access-denied", "slow-down", "endpoint-down"],
)
def test_an_s3_failure_during_upload_is_503(settings, storage, shop, monkeypatch, failure):
    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(storage.object_store._client, "upload_file", fail)
    with serve_in_thread(create_app(settings, storage)) as url:
        assert_unavailable(upload(url, shop["id"]))
        assert httpx.get(f"{url}/shops/{shop['id']}/photos").json()["items"] == [], "no record without a file"


def test_an_unreachable_s3_endpoint_is_503(settings, storage, shop):
    down = Storage(
        repository=storage.repository,
        object_store=S3ObjectStore(BUCKET, REGION, f"http://127.0.0.1:{free_port()}"),
    )
    with serve_in_thread(create_app(settings, down)) as url:
        assert_unavailable(upload(url, shop["id"]))


def test_a_failing_cleanup_after_a_failed_record_still_answers_the_first_error(
    settings, storage, shop, monkeypatch
):
    def lost(*args, **kwargs):
        raise client_error("InternalServerError", "TransactWriteItems")

    def cannot_delete(*args, **kwargs):
        raise client_error("AccessDenied", "DeleteObject")

    monkeypatch.setattr(storage.repository, "add_photo", lost)
    monkeypatch.setattr(storage.object_store._client, "delete_object", cannot_delete)
    with serve_in_thread(create_app(settings, storage)) as url:
        assert_unavailable(upload(url, shop["id"]))


@pytest.mark.parametrize("backend", ["dynamodb"])
@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "AccessDeniedException"]
)
def test_a_dynamodb_failure_is_503(settings, storage, shop, monkeypatch, code):
    def fail(*args, **kwargs):
        raise client_error(code, "GetItem")

    monkeypatch.setattr(storage.repository._client, "get_item", fail)
    with serve_in_thread(create_app(settings, storage)) as url:
        assert_unavailable(httpx.get(f"{url}/shops/{shop['id']}"))
        assert_unavailable(
            httpx.put(f"{url}/shops/{shop['id']}/reviews/ann", json={"stars": 5}, headers=AUTH, timeout=30)
        )


def test_a_client_that_abandons_an_upload_is_logged_as_an_abort(settings, storage, shop, caplog):
    with caplog.at_level(logging.INFO), serve_in_thread(create_app(settings, storage)) as url:
        part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n' + JPEG_BYTES
        with unfinished_upload(url, shop["id"], part, 1000000):
            time.sleep(0.3)  # the server is now waiting for the rest
        deadline = time.monotonic() + 10
        while (
            not any("client aborted" in r.getMessage() for r in caplog.records)
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    messages = [record.getMessage() for record in caplog.records if record.name.startswith("coffee_ranker")]
    assert any("client aborted POST" in message for message in messages), messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no error, no traceback"
    assert not any(" 500 " in message for message in messages)
