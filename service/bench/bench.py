"""Benchmark of the Coffee Shop Ranker API on the loopback.

    .venv/bin/python service/bench/bench.py [--backend sqlite|dynamodb] [--requests 3000]

Seeds 1,000 shops and 20,000 reviews through the storage layer, starts the service and two
references under the same uvicorn settings (each a subprocess, stopped by its PID): a bare ASGI
hello-world and a FastAPI app with one hello-world route. It measures requests/s and p50/p99 latency
of GET /shops and GET /shops/{id} with a few keep-alive clients, next to both references, in one run:
the ratios are the figures that travel between machines. Then it uploads a 100 MiB photo (a real
JPEG followed by 100 MiB the decoder never reads) and reports the service's peak RSS before and
after. An embedded AWS (moto) on an ephemeral port stands in for S3 and DynamoDB. Every loop is
bounded in count and time.
"""

import argparse
import http.client
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional

HERE = Path(__file__).resolve().parent
SERVICE = HERE.parent
sys.path.insert(0, str(SERVICE / "src"))

from coffee_ranker.domain.models import NewShop, Review, Shop, utc_now  # noqa: E402

MiB = 1024 * 1024
BUCKET = "coffee-bench"
REGION = "us-east-1"
TOKEN = "bench-write-token-0123456789"  # noqa: S105 - the benchmark's throwaway token


def small_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 80, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A server in a subprocess, waited for on its port and stopped by its PID."""

    def __init__(self, name: str, argv: List[str], port: int, env: dict, log_dir: Path) -> None:
        self.name, self.port = name, port
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "w") as log:
            self.popen = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_until_up(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise SystemExit(f"{self.name} exited early:\n{self.log_path.read_text()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", path)
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not come up:\n{self.log_path.read_text()}")

    def peak_rss(self) -> int:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def seed_sqlite(db_path: str, shops: int, reviews: int, rng: random.Random) -> List[str]:
    from coffee_ranker.storage.sqlite import SqliteRepository

    repository = SqliteRepository(db_path)
    repository.open()
    ids = [repository.create_shop(NewShop(name=f"Shop {n}", address=f"Street {n}")).id for n in range(shops)]
    for n in range(reviews):
        repository.put_review(rng.choice(ids), f"user{n}", rng.randint(1, 5), None)
    repository.close()
    return ids


def seed_dynamodb(endpoint: str, table: str, shops: int, reviews: int, rng: random.Random) -> List[str]:
    """Items built by the backend's own item functions, written in batches: moto applies a
    transaction by copying the whole table, far too slow for 20,000 of them."""
    from coffee_ranker.storage import aws
    from coffee_ranker.storage.dynamodb import rank_item, review_item, shop_item

    resource = aws.session().resource("dynamodb", region_name=REGION, endpoint_url=endpoint)
    resource.create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    now = utc_now()
    ids = [uuid.uuid4().hex for _ in range(shops)]
    counts = dict.fromkeys(ids, 0)
    sums = dict.fromkeys(ids, 0)
    with resource.Table(table).batch_writer() as batch:
        for n in range(reviews):
            shop_id, stars = rng.choice(ids), rng.randint(1, 5)
            counts[shop_id] += 1
            sums[shop_id] += stars
            batch.put_item(Item=review_item(Review(shop_id, f"user{n}", stars, None, now, now)))
        for n, shop_id in enumerate(ids):
            shop = Shop(shop_id, f"Shop {n}", f"Street {n}", None, None, counts[shop_id], sums[shop_id], now)
            batch.put_item(Item=shop_item(shop))
            batch.put_item(Item=rank_item(shop))
    return ids


def load(port: int, paths: Callable[[random.Random], str], requests: int, clients: int, seconds: float):
    """``requests`` GETs over ``clients`` keep-alive connections, stopping early after ``seconds``."""
    latencies: List[float] = []
    errors: List[str] = []
    lock = threading.Lock()
    per_client = max(1, requests // clients)
    deadline = time.monotonic() + seconds

    def client(index: int) -> None:
        rng = random.Random(index)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in range(per_client):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            connection.request("GET", paths(rng))
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors.append(str(response.status))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. status {errors[0]}")
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def upload(port: int, shop_id: str, size: int) -> int:
    boundary = "benchboundary"
    photo = small_jpeg()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + photo
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.putrequest("POST", f"/shops/{shop_id}/photos")
    connection.putheader("Authorization", f"Bearer {TOKEN}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + (size - len(photo)) + len(tail)))
    connection.endheaders()
    connection.send(head)
    block = b"\x5a" * MiB
    remaining = size - len(photo)
    while remaining > 0:
        connection.send(block[: min(MiB, remaining)])
        remaining -= MiB
    connection.send(tail)
    response = connection.getresponse()
    response.read()
    return response.status


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "dynamodb"], default="sqlite")
    parser.add_argument("--shops", type=int, default=1000)
    parser.add_argument("--reviews", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=2000, help="per scenario and round")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive client threads")
    parser.add_argument("--seconds", type=float, default=15, help="time limit per endpoint")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all scenarios; medians reported")
    parser.add_argument("--upload-mib", type=int, default=100)
    args = parser.parse_args(argv)

    rng = random.Random(42)
    work = Path(tempfile.mkdtemp(prefix="coffee-bench-"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join([str(SERVICE / "src"), str(HERE)]),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    processes: List[Process] = []
    try:
        aws_port = free_port()
        moto = Process(
            "embedded-aws",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(aws_port)],
            aws_port,
            env,
            work,
        )
        processes.append(moto)
        moto.wait_until_up("/moto-api/")
        endpoint = f"http://127.0.0.1:{aws_port}"

        from coffee_ranker.storage import aws

        aws.session().client("s3", region_name=REGION, endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        service_port = free_port()
        service_env = {
            **env,
            "RANKER_BUCKET": BUCKET,
            "RANKER_AWS_REGION": REGION,
            "RANKER_WRITE_TOKEN": TOKEN,
            "RANKER_S3_ENDPOINT_URL": endpoint,
            "RANKER_HOST": "127.0.0.1",
            "RANKER_PORT": str(service_port),
            "RANKER_METRICS_PORT": str(free_port()),  # served as on a host, on a port nothing else has
            "RANKER_MAX_UPLOAD_BYTES": str((args.upload_mib + 1) * MiB),
            "TMPDIR": str(work),
        }
        print(f"seeding {args.shops} shops and {args.reviews} reviews ({args.backend}) …", flush=True)
        seeding = time.perf_counter()
        if args.backend == "sqlite":
            service_env["RANKER_DB_PATH"] = str(work / "bench.sqlite3")
            ids = seed_sqlite(service_env["RANKER_DB_PATH"], args.shops, args.reviews, rng)
        else:
            table = "coffee-bench"
            ids = seed_dynamodb(endpoint, table, args.shops, args.reviews, rng)
            service_env.update(RANKER_DYNAMODB_TABLE=table, RANKER_DYNAMODB_ENDPOINT_URL=endpoint)
        print(f"seeded in {time.perf_counter() - seeding:.1f} s", flush=True)

        asgi_port, fastapi_port = free_port(), free_port()
        hello = HERE / "hello.py"
        asgi = Process(
            "hello-asgi", [sys.executable, str(hello), str(asgi_port), "asgi"], asgi_port, env, work
        )
        processes.append(asgi)
        fastapi = Process(
            "hello-fastapi",
            [sys.executable, str(hello), str(fastapi_port), "fastapi"],
            fastapi_port,
            env,
            work,
        )
        processes.append(fastapi)
        service = Process("service", [sys.executable, "-m", "coffee_ranker"], service_port, service_env, work)
        processes.append(service)
        asgi.wait_until_up("/")
        fastapi.wait_until_up("/")
        service.wait_until_up("/readyz")

        scenarios = [
            ("hello-world (bare ASGI)", asgi_port, lambda r: "/"),
            ("hello-world (FastAPI)", fastapi_port, lambda r: "/"),
            ("GET /shops", service_port, lambda r: "/shops"),
            ("GET /shops/{id}", service_port, lambda r: f"/shops/{r.choice(ids)}"),
        ]
        for _name, port, paths in scenarios:
            load(port, paths, min(200, args.requests), args.clients, args.seconds)  # warm-up
        # Rounds take turns over the scenarios, so a burst of load from elsewhere on the machine hits
        # them alike; each scenario reports its median round.
        rounds: dict = {name: [] for name, _, _ in scenarios}
        for _ in range(args.rounds):
            for name, port, paths in scenarios:
                rounds[name].append(load(port, paths, args.requests, args.clients, args.seconds))
        results = [
            (name, sorted(measured, key=lambda result: result["rps"])[len(measured) // 2])
            for name, measured in rounds.items()
        ]

        # A small upload first, so that code loaded on first use (Pillow) is not counted as growth.
        if upload(service_port, ids[0], MiB) != 201:
            raise SystemExit(f"the warm-up upload failed:\n{service.log_path.read_text()[-2000:]}")
        before = service.peak_rss()
        started = time.perf_counter()
        status = upload(service_port, ids[0], args.upload_mib * MiB)
        upload_seconds = time.perf_counter() - started
        after = service.peak_rss()
        if status != 201:
            raise SystemExit(f"the upload answered {status}:\n{service.log_path.read_text()[-2000:]}")

        asgi_rps, fastapi_rps = results[0][1]["rps"], results[1][1]["rps"]
        print()
        print(
            f"backend {args.backend}, {args.shops} shops, {args.reviews} reviews, "
            f"{args.clients} keep-alive clients, {os.cpu_count()} cores, median of {args.rounds} rounds"
        )
        print(
            f"{'scenario':<26}{'requests':>9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'vs ASGI':>10}{'vs FastAPI':>12}"
        )
        for name, result in results:
            print(
                f"{name:<26}{result['requests']:>9}{result['rps']:>10.0f}{result['p50']:>9.2f}"
                f"{result['p99']:>9.2f}{result['rps'] / asgi_rps:>9.0%}{result['rps'] / fastapi_rps:>12.0%}"
            )
        print(
            f"{args.upload_mib} MiB photo upload: {upload_seconds:.1f} s, service peak RSS "
            f"{before / MiB:.0f} MiB -> {after / MiB:.0f} MiB (+{(after - before) / MiB:.1f} MiB)"
        )
    except BaseException:
        print(f"logs kept in {work}", file=sys.stderr)
        raise
    finally:
        for process in reversed(processes):
            process.stop()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
