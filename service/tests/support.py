"""Helpers the tests share: an embedded AWS on an ephemeral port, and a uvicorn server in a thread."""

import contextlib
import io
import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator
from urllib.parse import urlsplit

import httpx
import uvicorn
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from PIL import Image
from werkzeug.serving import make_server

from coffee_ranker.storage import aws

REGION = "us-east-1"
BUCKET = "coffee-photos-test"
WRITE_TOKEN = "test-write-token-0123456789"
AUTH = {"Authorization": f"Bearer {WRITE_TOKEN}"}


def image_bytes(kind: str, size=(32, 24), color=(200, 120, 40), **save_options) -> bytes:
    """A real image of ``kind`` (JPEG, PNG or WEBP) that decodes, made with Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=kind, **save_options)
    return buffer.getvalue()


JPEG_BYTES = image_bytes("JPEG")
PNG_BYTES = image_bytes("PNG")
WEBP_BYTES = image_bytes("WEBP")


class EmbeddedAws:
    """moto's server on 127.0.0.1 and a port of its own, in this process.

    It serves one request at a time (threaded=False): every request is applied atomically, as the
    real services do for single items, while clients may still be as concurrent as they like. moto's
    own threaded mode applies a DynamoDB transaction without a lock, which real DynamoDB never does.
    """

    def __init__(self) -> None:
        self._server = make_server(
            "127.0.0.1",
            0,
            DomainDispatcherApplication(create_backend_app),
            threaded=False,
            request_handler=MotoRequestHandler,
        )
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-aws", daemon=True)

    def start(self) -> "EmbeddedAws":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def client(self, service: str):
        return aws.session().client(service, region_name=REGION, endpoint_url=self.endpoint)


def public_read_policy(bucket: str) -> str:
    """Anyone may GET the photos under media/, nothing else: what the Ansible role sets too."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicReadPhotos",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/media/*",
                }
            ],
        }
    )


def create_table(dynamodb, name: str) -> None:
    """The table as the service expects it: pk (S) + sk (S), no index."""
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@contextlib.contextmanager
def unfinished_upload(
    url: str, shop_id: str, body_start: bytes, content_length: int
) -> Iterator[socket.socket]:
    """A photo upload whose headers and ``body_start`` (of a multipart body of ``content_length`` bytes,
    boundary ``x``) are sent and whose rest never comes: the request stays in flight until the connection
    closes at the end of the block."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(
            (
                f"POST /shops/{shop_id}/photos HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: Bearer {WRITE_TOKEN}\r\nContent-Length: {content_length}\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
            ).encode()
            + body_start
        )
        yield connection


@contextlib.contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and an ephemeral port; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def free_port() -> int:
    """A port nothing listens on right now, for a server in a subprocess that needs it up front."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multipart(field: str, filename: str, content_type: str, data: bytes, boundary: str = "testboundary42"):
    """A multipart/form-data body and its Content-Type, built by hand to control every byte."""
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def service_environ(endpoint: str, tmp_path) -> Dict[str, str]:
    """The RANKER_* settings of a service on the embedded AWS, with SQLite in ``tmp_path``."""
    return {
        "RANKER_BUCKET": BUCKET,
        "RANKER_AWS_REGION": REGION,
        "RANKER_WRITE_TOKEN": WRITE_TOKEN,
        "RANKER_S3_ENDPOINT_URL": endpoint,
        "RANKER_DB_PATH": str(tmp_path / "ranker.sqlite3"),
    }


def wait_until_ready(process: subprocess.Popen, url: str, log_path, timeout: float = 30) -> None:
    """Poll /readyz of a service subprocess until it answers 200; fail with its log if it dies or stalls."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, Path(log_path).read_text()
        assert time.monotonic() < deadline, f"the service did not become ready:\n{Path(log_path).read_text()}"
        time.sleep(0.1)
