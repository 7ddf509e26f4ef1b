"""A 100 MiB photo streams through the service without the service holding it in memory.

The photo is a real JPEG followed by 100 MiB that its decoder never reads: the whole body is parsed
and spooled, the image decoded and re-encoded, and only the re-encoded picture goes to S3."""

import os
import subprocess
import sys

import httpx
import pytest

from tests.support import AUTH, BUCKET, free_port, image_bytes, service_environ, wait_until_ready

PHOTO = image_bytes("JPEG", size=(640, 480))

MiB = 1024 * 1024
UPLOAD_BYTES = 100 * MiB
#: The service's peak memory may grow by this much while it takes the 100 MiB upload.
ALLOWED_GROWTH = 16 * MiB

pytestmark = pytest.mark.slow


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.fixture
def service_process(aws, tmp_path):
    """coffee-ranker-api in a subprocess, as systemd runs it; stopped by its PID."""
    port = free_port()
    spool = tmp_path / "spool"
    spool.mkdir()
    environ = {
        **os.environ,
        **service_environ(aws.endpoint, tmp_path),
        "RANKER_HOST": "127.0.0.1",
        "TMPDIR": str(spool),
        "RANKER_PORT": str(port),
        "RANKER_METRICS_PORT": str(free_port()),
        # Above the default 10 MiB, so the 100 MiB body is really accepted and streamed to S3.
        "RANKER_MAX_UPLOAD_BYTES": str(UPLOAD_BYTES + MiB),
    }
    log = open(tmp_path / "service.log", "w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "coffee_ranker"], env=environ, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, tmp_path / "service.log")
        yield process, url, spool
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def streamed_multipart(size: int, boundary: str = "memoryboundary"):
    """A multipart body carrying a JPEG of ``size`` bytes, generated 1 MiB at a time."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks():
        yield head + PHOTO
        remaining = size - len(PHOTO)
        block = bytes(range(256)) * (MiB // 256)
        while remaining > 0:
            yield block[: min(MiB, remaining)]
            remaining -= MiB
        yield tail

    return chunks(), len(head) + size + len(tail), f"multipart/form-data; boundary={boundary}"


def test_a_100_mib_upload_raises_peak_memory_by_far_less_than_its_size(service_process, aws, tmp_path):
    process, url, spool = service_process
    with httpx.Client(base_url=url, timeout=120) as client:
        shop = client.post("/shops", json={"name": "Big", "address": "Photo Lane"}, headers=AUTH).json()
        # A small upload first, so that code paths loaded on first use are not counted as growth.
        body, length, content_type = streamed_multipart(9 * MiB)
        headers = {**AUTH, "Content-Type": content_type, "Content-Length": str(length)}
        assert client.post(f"/shops/{shop['id']}/photos", content=body, headers=headers).status_code == 201
        before = peak_rss(process.pid)

        body, length, content_type = streamed_multipart(UPLOAD_BYTES)
        headers = {**AUTH, "Content-Type": content_type, "Content-Length": str(length)}
        response = client.post(f"/shops/{shop['id']}/photos", content=body, headers=headers)
        after = peak_rss(process.pid)

    assert response.status_code == 201, response.text
    photo = response.json()
    stored = aws.client("s3").head_object(Bucket=BUCKET, Key=photo["key"])
    assert stored["ContentLength"] == photo["size"] < MiB, "the picture, not what trailed it"
    assert stored["ContentType"] == "image/jpeg"
    growth = after - before
    print(f"peak RSS {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB (+{growth / MiB:.1f} MiB)")  # noqa: T201
    assert growth < ALLOWED_GROWTH, f"peak RSS grew by {growth / MiB:.1f} MiB for a 100 MiB upload"
    assert not list(spool.iterdir()), "the spooled upload is removed once stored"


def test_an_anonymous_64_mib_post_costs_no_memory(service_process):
    process, url, spool = service_process
    with httpx.Client(base_url=url, timeout=120) as client:
        assert client.get("/shops").status_code == 200
        before = peak_rss(process.pid)
        for path in ("/shops", f"/shops/{'a' * 32}/photos"):
            body, length, content_type = streamed_multipart(64 * MiB)
            headers = {"Content-Type": content_type, "Content-Length": str(length)}
            assert client.post(path, content=body, headers=headers).status_code == 401
        after = peak_rss(process.pid)
    assert after - before < ALLOWED_GROWTH, f"peak RSS grew by {(after - before) / MiB:.1f} MiB"
    assert not list(spool.iterdir()), "nothing was spooled"
