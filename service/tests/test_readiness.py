"""Readiness tells the truth (an unwritable database, a full disk, a silent S3 or DynamoDB) and, in
public, names only the failing component: the details go to the log."""

import logging
import os
import shutil
import subprocess

import httpx
import pytest

from coffee_ranker.app import create_app
from coffee_ranker.storage import sqlite
from coffee_ranker.storage.dynamodb import (
    SCHEMA_PK,
    SCHEMA_SK,
    SCHEMA_VERSION,
    SCHEMA_VERSION_ATTRIBUTE,
    DynamoDbRepository,
    _wire,
)
from coffee_ranker.storage.factory import Storage
from coffee_ranker.storage.s3 import S3ObjectStore
from tests.support import BUCKET, REGION, free_port, serve_in_thread
from tests.test_api_shops import assert_problem


def _make_immutable(path) -> bool:
    """Make ``path`` unwritable even for root (chattr +i), or by its mode for anyone else."""
    if os.geteuid() != 0:
        os.chmod(path, 0o444)
        return True
    chattr = shutil.which("chattr")
    return chattr is not None and subprocess.run([chattr, "+i", str(path)], check=False).returncode == 0


def _make_mutable(path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False)
    os.chmod(path, 0o644)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_not_ready_when_the_database_file_is_read_only(settings, storage, tmp_path, caplog):
    with serve_in_thread(create_app(settings, storage)) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        storage.repository.close()  # the next check opens the file anew, as after a restart
        database = tmp_path / "ranker.sqlite3"
        if not _make_immutable(database):
            pytest.skip("cannot make a file read-only for root here (no chattr)")
        try:
            response = httpx.get(f"{url}/readyz")
        finally:
            _make_mutable(database)
    problem = assert_problem(response, 503)
    assert problem["checks"] == {"database": "unavailable", "bucket": "ok"}
    assert problem["detail"] == "Not ready: the database is not available."
    assert str(tmp_path) not in response.text
    assert any("readonly" in record.getMessage() for record in caplog.records), "the cause is logged"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_not_ready_when_the_disk_is_nearly_full(settings, storage, monkeypatch):
    real_statvfs = os.statvfs

    def nearly_full(path):
        stats = real_statvfs(path)
        return os.statvfs_result((*stats[:4], 1, *stats[5:]))  # one free block left for us

    monkeypatch.setattr(sqlite.os, "statvfs", nearly_full)
    with serve_in_thread(create_app(settings, storage)) as url:
        problem = assert_problem(httpx.get(f"{url}/readyz"), 503)
    assert problem["checks"]["database"] == "unavailable"


def test_not_ready_when_s3_does_not_answer(settings, storage, caplog):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    down = Storage(repository=storage.repository, object_store=S3ObjectStore(BUCKET, REGION, endpoint))
    with caplog.at_level(logging.ERROR), serve_in_thread(create_app(settings, down)) as url:
        response = httpx.get(f"{url}/readyz", timeout=60)
    problem = assert_problem(response, 503)
    assert problem["checks"] == {"database": "ok", "bucket": "unavailable"}
    assert endpoint not in response.text
    assert BUCKET not in response.text
    assert any(endpoint in record.getMessage() for record in caplog.records), "the endpoint is logged"


@pytest.mark.parametrize("backend", ["dynamodb"])
def test_not_ready_when_dynamodb_does_not_answer(settings, storage, caplog):
    endpoint = f"http://127.0.0.1:{free_port()}"
    # Opened while DynamoDB answered; then it stops answering.
    storage.repository._client = DynamoDbRepository(settings.dynamodb_table, REGION, endpoint)._client
    with caplog.at_level(logging.ERROR), serve_in_thread(create_app(settings, storage)) as url:
        response = httpx.get(f"{url}/readyz", timeout=60)
    problem = assert_problem(response, 503)
    assert problem["checks"] == {"database": "unavailable", "bucket": "ok"}
    assert settings.dynamodb_table not in response.text
    assert endpoint not in response.text
    assert any(settings.dynamodb_table in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("backend", ["dynamodb"])
def test_not_ready_when_a_newer_release_migrated_the_table(aws, settings, storage, caplog):
    """As with SQLite, a host of an older release than the data leaves the load balancer."""
    with caplog.at_level(logging.ERROR), serve_in_thread(create_app(settings, storage)) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        aws.client("dynamodb").put_item(
            TableName=settings.dynamodb_table,
            Item=_wire({"pk": SCHEMA_PK, "sk": SCHEMA_SK, SCHEMA_VERSION_ATTRIBUTE: SCHEMA_VERSION + 1}),
        )
        response = httpx.get(f"{url}/readyz")
    problem = assert_problem(response, 503)
    assert problem["checks"] == {"database": "unavailable", "bucket": "ok"}
    assert settings.dynamodb_table not in response.text
    assert any("newer than this release" in record.getMessage() for record in caplog.records)
