"""The service's Prometheus metrics: their names, labels and buckets; route templates, never paths;
the latency and failures of datastore and S3 calls; a port of their own; and exact counts when
several worker processes serve (the real command, RANKER_WORKERS=2, one worker killed mid-request)."""

import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator

import httpx
import pytest
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from coffee_ranker import __version__, metrics
from coffee_ranker.app import create_app
from coffee_ranker.domain.ports import ObjectStore, Repository
from coffee_ranker.storage.dynamodb import DynamoDbRepository
from coffee_ranker.storage.s3 import S3ObjectStore
from coffee_ranker.storage.sqlite import SqliteRepository
from tests.support import (
    AUTH,
    JPEG_BYTES,
    free_port,
    multipart,
    serve_in_thread,
    service_environ,
    unfinished_upload,
    wait_until_ready,
)
from tests.test_api_shops import assert_problem

#: Every family the service exports (no process or GC collectors): type and label names.
FAMILIES = {
    "coffee_ranker_http_requests": ("counter", {"method", "route", "status"}),
    "coffee_ranker_http_request_duration_seconds": ("histogram", {"method", "route"}),
    "coffee_ranker_http_requests_in_flight": ("gauge", set()),
    "coffee_ranker_build_info": ("gauge", {"version", "python"}),
    "coffee_ranker_dependency_call_duration_seconds": ("histogram", {"dependency", "operation"}),
    "coffee_ranker_dependency_call_errors": ("counter", {"dependency", "operation"}),
}
#: The upper bounds of both histograms, as documented (seconds).
BUCKETS = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1.0", "2.5", "5.0", "10.0", "30.0", "+Inf",
]  # fmt: skip
REQUESTS = "coffee_ranker_http_requests_total"
IN_FLIGHT = "coffee_ranker_http_requests_in_flight"
CALLS = "coffee_ranker_dependency_call_duration_seconds_count"
ERRORS = "coffee_ranker_dependency_call_errors_total"


def value(name: str, **labels: str) -> float:
    """A sample of this process's metrics (the in-thread servers'), 0 when the series is not there yet."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def settled() -> None:
    """Wait until the in-thread server has counted its last request (after answering it)."""
    wait_for(lambda: value(IN_FLIGHT) == 0, what="the last request being counted")


def families(text: str) -> Dict[str, tuple]:
    """name: (type, label names, samples) of an exposition."""
    parsed = {}
    for family in text_string_to_metric_families(text):
        names = {label for sample in family.samples for label in sample.labels if label != "le"}
        parsed[family.name] = (family.type, names, family.samples)
    return parsed


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` in an exposition."""
    return sum(
        found.value
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == name and labels.items() <= found.labels.items()
    )


def wait_for(condition, timeout: float = 15, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


def open_upload(url: str, shop_id: str):
    """An upload that stays in flight until the block ends (only the multipart body's first boundary sent)."""
    return unfinished_upload(url, shop_id, b"--x\r\n", 100000)


# -- the series ---------------------------------------------------------------------------------------


def test_the_series_have_their_documented_names_types_and_labels(client, shop):
    assert client.get(f"/shops/{shop['id']}").status_code == 200
    exported = families(generate_latest(metrics.REGISTRY).decode())
    assert {name: (kind, labels) for name, (kind, labels, _) in exported.items()} == FAMILIES
    names = {found.name for _, _, samples in exported.values() for found in samples}
    assert not [name for name in names if name.endswith("_created")], "one worker and several alike"


def test_both_histograms_have_the_documented_buckets(client, shop):
    assert client.get(f"/shops/{shop['id']}").status_code == 200
    exported = families(generate_latest(metrics.REGISTRY).decode())
    for name in (
        "coffee_ranker_http_request_duration_seconds",
        "coffee_ranker_dependency_call_duration_seconds",
    ):
        bounds = {}
        for found in exported[name][2]:
            if found.name.endswith("_bucket"):
                series = tuple(sorted((k, v) for k, v in found.labels.items() if k != "le"))
                bounds.setdefault(series, []).append(found.labels["le"])
        assert bounds, name
        for series, les in bounds.items():
            assert les == BUCKETS, (name, series)


def test_build_info_names_the_release_and_the_python():
    assert value("coffee_ranker_build_info", version=__version__, python=platform.python_version()) == 1


def test_a_parameterised_route_counts_under_its_template(client, shop):
    settled()
    ok = {"method": "GET", "route": "/shops/{shop_id}", "status": "200"}
    missing = dict(ok, status="404")
    before = value(REQUESTS, **ok), value(REQUESTS, **missing), value(REQUESTS, **dict(ok, method="HEAD"))
    timed = value("coffee_ranker_http_request_duration_seconds_count", method="GET", route="/shops/{shop_id}")
    for _ in range(3):
        assert client.get(f"/shops/{shop['id']}").status_code == 200
    assert client.get(f"/shops/{uuid.uuid4().hex}").status_code == 404
    assert client.get("/shops/not-an-id").status_code == 404
    assert client.head(f"/shops/{shop['id']}").status_code == 200
    settled()
    after = value(REQUESTS, **ok), value(REQUESTS, **missing), value(REQUESTS, **dict(ok, method="HEAD"))
    assert [a - b for a, b in zip(after, before)] == [3, 2, 1]
    assert (
        value("coffee_ranker_http_request_duration_seconds_count", method="GET", route="/shops/{shop_id}")
        == timed + 5
    )
    exposition = generate_latest(metrics.REGISTRY).decode()
    assert shop["id"] not in exposition, "templates, never paths"
    assert "not-an-id" not in exposition


def test_paths_and_methods_a_client_makes_up_add_no_series(client):
    def series() -> set:
        return {
            line.split()[0]
            for line in generate_latest(metrics.REGISTRY).decode().splitlines()
            if line.startswith(REQUESTS)
        }

    client.get("/no/such/path")
    client.request("BREW", "/no/such/pot")
    settled()
    count = series()
    unmatched = value(REQUESTS, method="GET", route="unmatched", status="404")
    other = value(REQUESTS, method="other", route="unmatched", status="404")
    for n in range(25):
        assert client.get(f"/no/such/{uuid.uuid4().hex}/{n}").status_code == 404
        assert client.request(f"BREW{n}", f"/{uuid.uuid4().hex}").status_code == 404
    settled()
    assert series() == count, "a made-up path or method adds no series"
    assert value(REQUESTS, method="GET", route="unmatched", status="404") == unmatched + 25
    assert value(REQUESTS, method="other", route="unmatched", status="404") == other + 25


def test_a_write_refused_before_routing_counts_under_its_route(client, shop):
    settled()
    shops = {"method": "POST", "route": "/shops", "status": "401"}
    photos = {"method": "POST", "route": "/shops/{shop_id}/photos", "status": "401"}
    before = value(REQUESTS, **shops), value(REQUESTS, **photos)
    assert client.post("/shops", json={"name": "X", "address": "Y"}).status_code == 401
    assert client.post(f"/shops/{shop['id']}/photos", content=b"x" * 10).status_code == 401
    settled()
    assert (value(REQUESTS, **shops), value(REQUESTS, **photos)) == (before[0] + 1, before[1] + 1)


def test_the_api_port_does_not_serve_metrics(client):
    settled()
    before = value(REQUESTS, method="GET", route="unmatched", status="404")
    assert_problem(client.get("/metrics"), 404)
    settled()
    assert value(REQUESTS, method="GET", route="unmatched", status="404") == before + 1


def test_a_request_is_in_flight_while_it_is_served(api_url, shop):
    settled()  # the shop's creation leaves the gauge just after its answer: not counted twice below
    before = value(IN_FLIGHT)
    with open_upload(api_url, shop["id"]):
        wait_for(lambda: value(IN_FLIGHT) == before + 1, what="the upload counting as in flight")
    wait_for(lambda: value(IN_FLIGHT) == before, what="the abandoned upload leaving the gauge")


# -- datastore and S3 ---------------------------------------------------------------------------------


def test_every_storage_operation_is_measured():
    for backend in (SqliteRepository, DynamoDbRepository):
        for name in Repository.__abstractmethods__ - {"open", "close"}:
            assert hasattr(getattr(backend, name), "__wrapped__"), f"{backend.__name__}.{name}"
    assert hasattr(SqliteRepository.change_token, "__wrapped__")
    for name in ObjectStore.__abstractmethods__ - {"public_url"}:
        assert hasattr(getattr(S3ObjectStore, name), "__wrapped__"), f"S3ObjectStore.{name}"


def test_datastore_and_s3_calls_are_timed(client, shop, backend):
    calls = {
        ("s3", "put_file"): value(CALLS, dependency="s3", operation="put_file"),
        (backend, "add_photo"): value(CALLS, dependency=backend, operation="add_photo"),
        (backend, "list_photos"): value(CALLS, dependency=backend, operation="list_photos"),
    }
    errors = (
        value(ERRORS, dependency="s3", operation="put_file"),
        value(ERRORS, dependency=backend, operation="add_photo"),
    )
    body, content_type = multipart("file", "a.jpg", "image/jpeg", JPEG_BYTES)
    response = client.post(
        f"/shops/{shop['id']}/photos", content=body, headers={**AUTH, "Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    assert client.get(f"/shops/{shop['id']}/photos").status_code == 200
    for (dependency, operation), before in calls.items():
        assert value(CALLS, dependency=dependency, operation=operation) == before + 1, operation
    assert (
        value(ERRORS, dependency="s3", operation="put_file"),
        value(ERRORS, dependency=backend, operation="add_photo"),
    ) == errors
    assert value(
        "coffee_ranker_dependency_call_duration_seconds_bucket",
        dependency="s3",
        operation="put_file",
        le="+Inf",
    ) == value(CALLS, dependency="s3", operation="put_file")


def test_an_unknown_shop_is_an_answer_not_a_failure(client, backend):
    calls = value(CALLS, dependency=backend, operation="get_shop")
    errors = value(ERRORS, dependency=backend, operation="get_shop")
    assert client.get(f"/shops/{uuid.uuid4().hex}").status_code == 404
    assert value(CALLS, dependency=backend, operation="get_shop") == calls + 1
    assert value(ERRORS, dependency=backend, operation="get_shop") == errors


def test_a_failing_s3_counts_an_error(settings, storage, shop, monkeypatch):
    def refuse(*args, **kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "PutObject")

    monkeypatch.setattr(storage.object_store._client, "upload_file", refuse)
    before = (
        value(ERRORS, dependency="s3", operation="put_file"),
        value(CALLS, dependency="s3", operation="put_file"),
    )
    with serve_in_thread(create_app(settings, storage)) as url:
        body, content_type = multipart("file", "a.jpg", "image/jpeg", JPEG_BYTES)
        response = httpx.post(
            f"{url}/shops/{shop['id']}/photos", content=body, headers={**AUTH, "Content-Type": content_type}
        )
    assert response.status_code == 503
    after = (
        value(ERRORS, dependency="s3", operation="put_file"),
        value(CALLS, dependency="s3", operation="put_file"),
    )
    assert after == (before[0] + 1, before[1] + 1)


class _BrokenConnection:
    def execute(self, *args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")


def test_a_failing_datastore_counts_one_error_per_call(settings, storage, shop, backend, monkeypatch):
    if backend == "sqlite":
        monkeypatch.setattr(SqliteRepository, "_db", property(lambda self: _BrokenConnection()))
    else:

        def refuse(*args, **kwargs):
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "GetItem")

        monkeypatch.setattr(storage.repository._client, "get_item", refuse)
    listing = {"dependency": backend, "operation": "list_reviews"}
    inner = {"dependency": backend, "operation": "get_shop"}
    before = value(ERRORS, **listing), value(CALLS, **listing), value(ERRORS, **inner), value(CALLS, **inner)
    with serve_in_thread(create_app(settings, storage)) as url:
        assert httpx.get(f"{url}/shops/{shop['id']}/reviews").status_code == 503
    after = value(ERRORS, **listing), value(CALLS, **listing), value(ERRORS, **inner), value(CALLS, **inner)
    # The listing checks its shop first (get_shop, inside it): one call, one failure.
    assert after == (before[0] + 1, before[1] + 1, before[2], before[3])


# -- the real command ---------------------------------------------------------------------------------


class Service:
    def __init__(self, process: subprocess.Popen, url: str, metrics_url: str, tmp: Path) -> None:
        self.process, self.url, self.metrics_url, self.tmp = process, url, metrics_url, tmp

    def scrape(self) -> str:
        response = httpx.get(self.metrics_url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    def multiprocess_dirs(self):
        return sorted(self.tmp.glob("coffee-ranker-metrics-*"))


@contextlib.contextmanager
def running_service(aws, tmp_path: Path, workers: int) -> Iterator[Service]:
    """``python -m coffee_ranker`` as systemd runs it, RANKER_WORKERS=workers; stopped by its PID."""
    port, metrics_port = free_port(), free_port()
    tmp = tmp_path / f"tmp-{workers}"
    tmp.mkdir()
    environ = {
        **os.environ,
        **service_environ(aws.endpoint, tmp_path),
        "RANKER_HOST": "127.0.0.1",
        "RANKER_PORT": str(port),
        "RANKER_METRICS_PORT": str(metrics_port),
        "RANKER_WORKERS": str(workers),
        "TMPDIR": str(tmp),
    }
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / f"service-{workers}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "coffee_ranker"], env=environ, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, log_path)
        yield Service(process, url, f"http://127.0.0.1:{metrics_port}/metrics", tmp)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert returncode in (0, -signal.SIGTERM), log_path.read_text()


def per_worker(directory: Path, scratch: Path) -> Dict[int, str]:
    """Each worker's own metrics, as an exposition: its files alone, summed by the library's collector."""
    pids = {
        int(match.group(1))
        for match in (re.search(r"_(\d+)\.db$", p.name) for p in directory.iterdir())
        if match
    }
    exposed = {}
    for pid in pids:
        alone = scratch / f"pid-{pid}-{uuid.uuid4().hex[:6]}"
        alone.mkdir()
        for path in directory.glob(f"*_{pid}.db"):
            shutil.copy(path, alone)
        registry = CollectorRegistry()
        registry.register(MultiProcessCollector(None, str(alone)))
        exposed[pid] = generate_latest(registry).decode()
    return exposed


def load(url: str, requests: int, clients: int = 4) -> None:
    """``requests`` GETs of ``url``, each on a new connection, from ``clients`` threads at once."""
    failures = []

    def client(count: int) -> None:
        for _ in range(count):
            response = httpx.get(url, timeout=30)  # no keep-alive: every request may land on any worker
            if response.status_code != 200:
                failures.append(response.status_code)

    threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


@pytest.mark.slow
def test_several_workers_count_every_request_exactly_once(aws, tmp_path):
    with running_service(aws, tmp_path, workers=2) as service:
        shop = httpx.post(f"{service.url}/shops", json={"name": "Two", "address": "Workers"}, headers=AUTH)
        assert shop.status_code == 201
        (directory,) = service.multiprocess_dirs()
        target = f"{service.url}/shops/{shop.json()['id']}"
        served = {"route": "/shops/{shop_id}", "status": "200", "method": "GET"}
        sent = 0
        for _ in range(10):  # until both workers have served some: each round is 100 new connections
            load(target, 100)
            sent += 100
            by_worker = {
                pid: sample(text, REQUESTS, **served) for pid, text in per_worker(directory, tmp_path).items()
            }
            if sum(1 for count in by_worker.values() if count > 0) >= 2:
                break
        assert sum(1 for count in by_worker.values() if count > 0) == 2, by_worker

        # Each worker counts a request once it has answered it: wait until none is in flight.
        wait_for(
            lambda: sample(service.scrape(), IN_FLIGHT) == 0, what="the workers counting the last requests"
        )
        by_worker = {
            pid: sample(text, REQUESTS, **served) for pid, text in per_worker(directory, tmp_path).items()
        }
        scraped = service.scrape()
        assert sample(scraped, REQUESTS, **served) == sent, "every request once, across the workers"
        assert sum(by_worker.values()) == sent
        assert (
            sample(scraped, "coffee_ranker_http_request_duration_seconds_count", route="/shops/{shop_id}")
            == sent
        )
        assert sample(scraped, IN_FLIGHT) == 0
        assert sample(scraped, "coffee_ranker_build_info", version=__version__) == 1
        assert "pid=" not in scraped, "one series per label set, not one per worker"
        assert sample(scraped, REQUESTS, route="/shops", method="POST", status="201") == 1
        assert sample(scraped, CALLS, dependency="sqlite", operation="create_shop") == 1

        assert_problem(httpx.get(f"{service.url}/metrics"), 404)
        wait_for(
            lambda: sample(service.scrape(), REQUESTS, route="unmatched", status="404") == 1, 5, "a count"
        )
    assert not service.multiprocess_dirs(), "the workers' metrics directory is removed when it stops"


@pytest.mark.slow
def test_a_worker_killed_mid_request_is_no_longer_in_flight(aws, tmp_path):
    with running_service(aws, tmp_path, workers=2) as service:
        shop = httpx.post(
            f"{service.url}/shops", json={"name": "Kill", "address": "Nine"}, headers=AUTH
        ).json()
        (directory,) = service.multiprocess_dirs()
        wait_for(
            lambda: sample(service.scrape(), IN_FLIGHT) == 0, what="the workers counting the last requests"
        )
        with open_upload(service.url, shop["id"]):
            wait_for(
                lambda: sample(service.scrape(), IN_FLIGHT) == 1, what="the upload counting as in flight"
            )
            counted = sample(service.scrape(), REQUESTS)
            (serving,) = [
                pid for pid, text in per_worker(directory, tmp_path).items() if sample(text, IN_FLIGHT) == 1
            ]
            os.kill(serving, signal.SIGKILL)
            wait_for(
                lambda: sample(service.scrape(), IN_FLIGHT) == 0, what="the dead worker leaving the gauge"
            )
            scraped = service.scrape()
            assert sample(scraped, REQUESTS) == counted, "what the dead worker counted still counts"
        wait_until_ready(service.process, service.url, tmp_path / "service-2.log")  # uvicorn replaced it
        assert sample(service.scrape(), REQUESTS, route="/readyz", status="200") >= 2


@pytest.mark.slow
def test_one_worker_and_several_export_the_same_series(aws, tmp_path):
    def exercise(service: Service) -> Dict[str, tuple]:
        shop = httpx.post(
            f"{service.url}/shops", json={"name": "Same", "address": "Names"}, headers=AUTH
        ).json()
        assert httpx.get(f"{service.url}/shops/{shop['id']}").status_code == 200
        assert httpx.get(f"{service.url}/nowhere").status_code == 404
        exported = families(service.scrape())
        return {name: (kind, labels) for name, (kind, labels, _) in exported.items()}

    with running_service(aws, tmp_path, workers=1) as service:
        assert not service.multiprocess_dirs(), "one worker keeps its metrics in memory"
        alone = exercise(service)
    with running_service(aws, tmp_path, workers=3) as service:
        several = exercise(service)
    assert alone == several == FAMILIES


@pytest.mark.slow
def test_a_metrics_port_in_use_stops_the_command_with_one_line(aws, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        environ = {
            **os.environ,
            **service_environ(aws.endpoint, tmp_path),
            "RANKER_HOST": "127.0.0.1",
            "RANKER_PORT": str(free_port()),
            "RANKER_METRICS_PORT": str(taken.getsockname()[1]),
        }
        finished = subprocess.run(
            [sys.executable, "-m", "coffee_ranker"], env=environ, capture_output=True, text=True, timeout=60
        )
    assert finished.returncode == 1, finished.stderr
    assert "Traceback" not in finished.stderr
    (line,) = [line for line in finished.stderr.splitlines() if line.startswith("coffee-ranker-api:")]
    assert line.startswith("coffee-ranker-api: cannot serve the metrics on 127.0.0.1:")
    assert "(RANKER_METRICS_PORT)" in line
