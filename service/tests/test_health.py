"""Liveness, readiness and the access log."""

import logging
import re
import time

import httpx

from coffee_ranker.app import create_app
from coffee_ranker.storage.factory import Storage
from coffee_ranker.storage.s3 import S3ObjectStore
from tests.support import REGION, serve_in_thread
from tests.test_api_shops import assert_problem


def test_liveness_needs_nothing(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_ready_when_the_database_and_the_bucket_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "bucket": "ok"}}


def test_not_ready_when_the_bucket_is_missing(settings, aws, storage):
    no_bucket = Storage(
        repository=storage.repository, object_store=S3ObjectStore("no-such-bucket", REGION, aws.endpoint)
    )
    with serve_in_thread(create_app(settings, no_bucket)) as url:
        response = httpx.get(f"{url}/readyz")
        problem = assert_problem(response, 503)
        assert problem["checks"] == {"database": "ok", "bucket": "unavailable"}
        assert problem["detail"] == "Not ready: the bucket is not available."
        assert "no-such-bucket" not in response.text
        assert aws.endpoint not in response.text
        assert response.headers["retry-after"] == "5"
        assert httpx.get(f"{url}/healthz").status_code == 200, "liveness does not depend on storage"


def test_not_ready_when_the_database_is_gone(settings, aws, storage):
    with serve_in_thread(create_app(settings, storage)) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        storage.repository.close()
        if settings.storage_backend == "sqlite":
            # A database file whose directory vanished cannot be reopened.
            storage.repository.path = "/nonexistent/ranker.sqlite3"
        else:
            storage.repository.table = "no-such-table"
        problem = assert_problem(httpx.get(f"{url}/readyz"), 503)
        assert problem["checks"] == {"database": "unavailable", "bucket": "ok"}


def access_records(caplog) -> list:
    return [r for r in caplog.records if r.name == "coffee_ranker.access"]


def test_each_request_is_logged_with_method_path_status_and_duration(client, caplog):
    with caplog.at_level(logging.INFO, logger="coffee_ranker.access"):
        client.get("/shops/" + "1" * 32)
        # The server thread writes the line once the response is sent, which can be after the client
        # has it: wait for it briefly rather than race it.
        deadline = time.monotonic() + 5
        while not access_records(caplog) and time.monotonic() < deadline:
            time.sleep(0.01)
    (record,) = access_records(caplog)
    method, route, status, duration, request_id = record.getMessage().split()
    assert (method, route, status) == ("GET", "/shops/{shop_id}", "404"), "the route template, not the id"
    assert duration.endswith("ms")
    assert float(duration[:-2]) >= 0
    assert re.fullmatch("[0-9a-f]{32}", request_id)
