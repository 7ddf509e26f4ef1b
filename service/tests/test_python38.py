"""The service runs where it is deployed: Python 3.8 (Ubuntu 18.04) up to 3.13.

- the source compiles with a 3.8 interpreter (tools/check-python38);
- requirements.lock resolves to binary wheels for CPython 3.8 … 3.13 on manylinux x86_64 (needs PyPI);
- the wheelhouse for 3.8 installs with no index into a 3.8 venv, and the installed service answers,
  takes a review and a photo, serves its metrics on their own port (with one worker and with two),
  and stops cleanly on SIGTERM (needs PyPI to build the wheelhouse).
"""

import glob
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from tests.support import AUTH, JPEG_BYTES, free_port, multipart, service_environ, wait_until_ready

SERVICE = Path(__file__).resolve().parent.parent
LOCK = SERVICE / "requirements.lock"


def pyenv_python(version: str):
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python3"))
    return found[-1] if found else None


PYTHON38 = os.environ.get("PYTHON38") or pyenv_python("3.8")
needs_python38 = pytest.mark.skipif(PYTHON38 is None, reason="no Python 3.8 interpreter on this machine")


def locked() -> dict:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)$", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_the_lock_pins_every_runtime_dependency_exactly():
    pins = locked()
    for direct in (
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
        "pydantic-core",
        "python-multipart",
        "boto3",
        "pillow",
        "prometheus-client",
    ):
        assert direct in pins, direct
    assert pins["pydantic"].startswith("2.10."), "pydantic 2.10 is the last release for Python 3.8"
    assert pins["botocore"] == pins["boto3"]


@needs_python38
def test_the_source_compiles_with_python_3_8():
    finished = subprocess.run(
        [str(SERVICE / "tools" / "check-python38")],
        env={**os.environ, "PYTHON38": PYTHON38},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "compiles with Python 3.8" in finished.stdout


@pytest.mark.network
@pytest.mark.parametrize("version", ["3.8", "3.9", "3.11", "3.13"])
def test_the_lock_resolves_to_wheels_for_cpython(version, tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
         "--python-version", version, "--implementation", "cp", "--platform", "manylinux2014_x86_64",
         "--only-binary=:all:", "-r", str(LOCK), "-d", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    downloaded = {}
    for wheel in tmp_path.glob("*.whl"):
        name, wheel_version = wheel.name.split("-")[:2]
        downloaded[re.sub(r"[-_.]+", "-", name).lower()] = wheel_version
    assert downloaded == locked(), "the lock is the whole closure, and pip took nothing else"


@pytest.mark.network
@pytest.mark.slow
@needs_python38
def test_the_wheelhouse_installs_offline_and_serves_under_python_3_8(aws, tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    subprocess.run(
        [str(SERVICE / "tools" / "build-wheelhouse"), "3.8", str(wheelhouse)], check=True, timeout=600
    )
    again = subprocess.run(
        [str(SERVICE / "tools" / "build-wheelhouse"), "3.8", str(wheelhouse)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "up to date" in again.stdout, "a second run with nothing changed rebuilds nothing"

    # The archive a host gets holds exactly the wheelhouse.
    with tarfile.open(f"{wheelhouse}.tar") as archive:
        archived = {Path(name).name for name in archive.getnames() if name not in (".", "./")}
    assert archived == {path.name for path in wheelhouse.iterdir()}

    # As roles/api_service installs: a venv without pip, then the wheelhouse's pip, run from its wheel,
    # installs itself and the service.
    venv = tmp_path / "venv"
    subprocess.run([PYTHON38, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (pip_wheel,) = wheelhouse.glob("pip-*.whl")
    subprocess.run(
        [str(venv / "bin" / "python"), f"{pip_wheel}/pip", "install", "--quiet",
         "--disable-pip-version-check", "--no-index", "--only-binary=:all:", "--find-links", str(wheelhouse),
         "pip", "coffee-ranker-api"],
        check=True, timeout=300, env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )  # fmt: skip
    assert (venv / "bin" / "pip").exists()

    port, metrics_port = free_port(), free_port()
    environ = {
        **os.environ,
        **service_environ(aws.endpoint, tmp_path),
        "RANKER_HOST": "127.0.0.1",
        "RANKER_PORT": str(port),
        "RANKER_METRICS_PORT": str(metrics_port),
    }
    log_path = tmp_path / "service.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "coffee-ranker-api")], env=environ, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url, log_path)
        with httpx.Client(base_url=url) as client:
            shop = client.post(
                "/shops", json={"name": "Old Faithful", "address": "Bionic Road"}, headers=AUTH
            )
            assert shop.status_code == 201
            shop_id = shop.json()["id"]
            assert (
                client.put(f"/shops/{shop_id}/reviews/eve", json={"stars": 5}, headers=AUTH).status_code
                == 201
            )
            body, content_type = multipart("file", "a.jpg", "image/jpeg", JPEG_BYTES)
            photo = client.post(
                f"/shops/{shop_id}/photos", content=body, headers={**AUTH, "Content-Type": content_type}
            )
            assert photo.status_code == 201, photo.text
            assert client.get("/shops").json()["items"][0]["review_count"] == 1
            assert client.get("/metrics").status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'coffee_ranker_build_info{python="3.8.' in scraped
        assert 'method="POST",route="/shops/{shop_id}/photos",status="201"} 1.0' in scraped, scraped
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    log = log_path.read_text()
    # uvicorn re-raises SIGTERM once shut down; systemd counts death by SIGTERM as a clean stop.
    assert returncode in (0, -signal.SIGTERM), log
    assert "storage closed" in log
    assert re.search(
        r"coffee_ranker\.access: POST /shops/\{shop_id\}/photos 201 \d+\.\dms [0-9a-f]{32}", log
    ), log

    # Several workers, as the locked uvicorn and prometheus-client run them under Python 3.8: the
    # parent serves the sum of the workers' counts.
    environ["RANKER_WORKERS"] = "2"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "coffee-ranker-api")], env=environ, stdout=log, stderr=log
        )
    try:
        wait_until_ready(process, url, log_path)
        for _ in range(20):
            assert httpx.get(f"{url}/shops/{shop_id}").status_code == 200  # a new connection each
        deadline = time.monotonic() + 15
        while True:
            scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
            if "coffee_ranker_http_requests_in_flight 0.0" in scraped or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert 'route="/shops/{shop_id}",status="200"} 20.0' in scraped, scraped
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=40)
    assert returncode in (0, -signal.SIGTERM), log_path.read_text()
