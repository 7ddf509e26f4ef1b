"""The embedded AWS's Application Load Balancers pass traffic through a real HAProxy, as an ALB would.

Each test talks to the ELB API only (boto3, endpoint our own server), sends real HTTP through the listener
URL of ``<state>/load-balancers/<name>.json`` and watches small HTTP servers on 127.0.0.1 that stand for
the instances (``<state>/hosts/x-<instance id>/host.json`` points at them).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, EmbeddedAws, wait_for

NOBLE = "ami-02ecac1fbf21dc85a"
INTERVAL = 5  # the shortest health check interval AWS allows
DRAIN = 3  # deregistration_delay.timeout_seconds


class Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # HAProxy's health checks end with a reset


class Backend:
    """An instance's API: / answers its name, /readyz the status set in `ready` (200 or 503), /hold only once
    `release` is set (a request in flight for as long as a test wants; `holding` is set while one waits)."""

    def __init__(self, name: str, port: int = 0):
        self.name, self.ready, self.port = name, 200, port
        self.holding, self.release = threading.Event(), threading.Event()
        self.connections: set[socket.socket] = set()
        self.server: Quiet | None = None
        self.start()

    def start(self) -> None:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as HAProxy uses it

            def setup(self):
                super().setup()
                backend.connections.add(self.connection)

            def do_GET(self):
                if self.path == "/hold":
                    backend.holding.set()
                    backend.release.wait(timeout=60)
                status, body = (backend.ready, b"ready") if self.path == "/readyz" else (200, backend.name.encode())
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        self.server = Quiet(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """As a stopped service: the port refuses, open connections are closed."""
        self.server.shutdown()
        self.server.server_close()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.connections.clear()


class Traffic:
    """Steady requests through the load balancer from a thread, on one keep-alive connection or (keep_alive
    False) a new connection each."""

    def __init__(self, url: str, keep_alive: bool = True):
        self.url, self.keep_alive, self.answers, self.failures = url, keep_alive, Counter(), []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self.thread.join()

    def _run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        while not self._stop.is_set():
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read().decode()
                if response.status == 200:
                    self.answers[body] += 1
                else:
                    self.failures.append(response.status)
                if response.status != 200 or not self.keep_alive:
                    connection.close()
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
                connection.close()
            time.sleep(0.005)


def start_server(state: Path) -> tuple[subprocess.Popen, EmbeddedAws]:
    """Our own embedded AWS (kind mode) on a free loopback port, with its own state directory."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_AWS_REALISM")}
    env.update(
        SANDBOX_STATE_DIR=str(state), MOTO_AMIS_PATH=str(REPO / "sandbox" / "amis.json"), MOTO_ACM_VALIDATION_WAIT="0"
    )
    process = subprocess.Popen(
        [sys.executable, str(REPO / "sandbox" / "embedded_aws_server.py"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    aws = EmbeddedAws(f"http://127.0.0.1:{port}")
    wait_for(lambda: _answers(aws), 30, "the embedded AWS to start")
    return process, aws


def _answers(aws: EmbeddedAws) -> bool:
    try:
        urllib.request.urlopen(f"{aws.endpoint}/moto-api/", timeout=1).close()
        return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def create_load_balancer(aws: EmbeddedAws, name: str) -> tuple[str, str]:
    """An ALB in the default VPC with an HTTP listener forwarding to a target group; (LB arn, TG arn)."""
    ec2, elb = aws.client("ec2"), aws.client("elbv2")
    subnets = [
        s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    ]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    lb = elb.create_load_balancer(Name=name, Subnets=subnets[:2], Type="application")["LoadBalancers"][0]
    tg = elb.create_target_group(
        Name=f"{name}-api",
        Protocol="HTTP",
        Port=8000,
        VpcId=vpc,
        HealthCheckPath="/readyz",
        HealthCheckIntervalSeconds=INTERVAL,
        HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
        Matcher={"HttpCode": "200-299"},
    )["TargetGroups"][0]
    elb.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(DRAIN)}],
    )
    elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    return lb["LoadBalancerArn"], tg["TargetGroupArn"]


class Site:
    """One ALB with its target group, its instances and their backends."""

    def __init__(self, aws: EmbeddedAws, state: Path, name: str):
        self.aws, self.state, self.name = aws, state, name
        self.elb = aws.client("elbv2")
        self.lb_arn, self.tg_arn = create_load_balancer(aws, name)
        self.backends: dict[str, Backend] = {}  # instance id
        self.ports: dict[str, int] = {}  # instance id: the port it is registered with

    @property
    def record(self) -> dict:
        return json.loads((self.state / "load-balancers" / f"{self.name}.json").read_text())

    @property
    def url(self) -> str:
        return self.record["listeners"][0]["url"]

    def instance(self, name: str, booted: bool = True) -> str:
        """A new instance with a backend of its own, its host record written unless not yet `booted`; its id."""
        ec2 = self.aws.client("ec2")
        (instance,) = ec2.run_instances(ImageId=NOBLE, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"]
        self.backends[instance["InstanceId"]] = Backend(name)
        self.ports[instance["InstanceId"]] = self.backends[instance["InstanceId"]].port
        if booted:
            self.write_record(instance["InstanceId"], "hosts", {"address": "127.0.0.1", "name": name})
        return instance["InstanceId"]

    def write_record(self, instance_id: str, kind: str, record: dict) -> None:
        """The machine's record, as sandbox/hosts or sandbox/vms write it when the machine is up."""
        directory = self.state / kind / f"x-{instance_id}"
        directory.mkdir(parents=True)
        (directory / "host.json").write_text(json.dumps(record))

    def targets(self, instance_id: str) -> list[dict]:
        return [{"Id": instance_id, "Port": self.ports[instance_id]}]

    def register(self, instance_id: str) -> None:
        self.elb.register_targets(TargetGroupArn=self.tg_arn, Targets=self.targets(instance_id))

    def deregister(self, instance_id: str) -> None:
        self.elb.deregister_targets(TargetGroupArn=self.tg_arn, Targets=self.targets(instance_id))

    def health(self, instance_id: str | None = None) -> dict[str, tuple[str, str | None]]:
        """{instance id: (state, reason)}, of one target (asked for by id) or of all."""
        targets = self.targets(instance_id) if instance_id else []
        described = self.elb.describe_target_health(TargetGroupArn=self.tg_arn, Targets=targets)
        return {
            d["Target"]["Id"]: (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
            for d in described["TargetHealthDescriptions"]
        }

    def wait_state(self, instance_id: str, state: str, timeout: float = 4 * INTERVAL) -> None:
        wait_for(lambda: self.health(instance_id)[instance_id][0] == state, timeout, f"{instance_id} {state}")

    def answers(self, count: int) -> Counter:
        """Who answered `count` requests through the load balancer (new connection each)."""
        seen = Counter()
        for _ in range(count):
            with urllib.request.urlopen(self.url + "/", timeout=10) as response:
                seen[response.read().decode()] += 1
        return seen


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    process, aws = start_server(state)
    yield aws, state
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture(scope="module")
def site(server):
    """An ALB with two healthy instances, "a" and "b"."""
    aws, state = server
    site = Site(aws, state, "shop")
    for name in ("a", "b"):
        site.register(site.instance(name))
    for instance_id in site.backends:
        site.wait_state(instance_id, "healthy")
    return site


def test_the_record_names_the_listener_and_traffic_goes_round_robin(site):
    record = site.record
    assert record["name"] == "shop"
    assert record["arn"] == site.lb_arn
    assert record["listeners"] == [{"port": 80, "protocol": "HTTP", "url": site.url, "served": True}]
    assert alive(record["pid"])
    assert site.answers(10) == Counter({"a": 5, "b": 5})


def test_a_new_target_gets_traffic_only_once_healthy_and_a_failing_one_none(site):
    new = site.instance("c", booted=False)  # a VM, registered before it has booted
    site.ports[new] = 8000  # the guest's API port; the VM's record forwards a host port to it
    site.register(new)
    time.sleep(1)
    assert site.health(new)[new] == ("initial", "Elb.RegistrationInProgress")
    site.write_record(new, "vms", {"address": "127.0.0.1", "api_port": site.backends[new].port})
    time.sleep(1)
    assert site.health(new)[new] == ("initial", "Elb.RegistrationInProgress")
    assert "c" not in site.answers(20)
    site.wait_state(new, "healthy")
    assert site.answers(30) == Counter({"a": 10, "b": 10, "c": 10})

    site.backends[new].ready = 503
    site.wait_state(new, "unhealthy")
    assert site.health()[new] == ("unhealthy", "Target.ResponseCodeMismatch")
    assert "c" not in site.answers(20)

    site.deregister(new)
    assert site.health()[new] == ("draining", "Target.DeregistrationInProgress")
    assert site.health(new)[new] == ("draining", "Target.DeregistrationInProgress")
    time.sleep(DRAIN + 1)
    assert new not in site.health()
    assert site.health(new)[new] == ("unused", "Target.NotRegistered")


def test_targets_of_a_group_no_listener_uses_are_unused(site):
    vpc = site.aws.client("ec2").describe_vpcs()["Vpcs"][0]["VpcId"]
    spare = site.elb.create_target_group(Name="spare", Protocol="HTTP", Port=8000, VpcId=vpc)["TargetGroups"][0]
    instance_id = next(iter(site.backends))
    site.elb.register_targets(TargetGroupArn=spare["TargetGroupArn"], Targets=site.targets(instance_id))
    (described,) = site.elb.describe_target_health(TargetGroupArn=spare["TargetGroupArn"])["TargetHealthDescriptions"]
    assert (described["TargetHealth"]["State"], described["TargetHealth"]["Reason"]) == ("unused", "Target.NotInUse")
    site.elb.delete_target_group(TargetGroupArn=spare["TargetGroupArn"])


def test_a_rolling_restart_through_deregistration_fails_no_request(site):
    instance_id = next(i for i, b in site.backends.items() if b.name == "a")
    backend = site.backends[instance_id]
    with Traffic(site.url) as traffic:
        time.sleep(0.5)
        site.deregister(instance_id)
        assert site.health(instance_id)[instance_id][0] == "draining"
        wait_for(lambda: site.health(instance_id)[instance_id][0] != "draining", DRAIN + 5, "the drain")
        assert site.health(instance_id)[instance_id] == ("unused", "Target.NotRegistered")
        backend.stop()
        time.sleep(0.5)
        backend.start()  # the same port, as a restarted service
        site.register(instance_id)
        site.wait_state(instance_id, "healthy")
        time.sleep(0.5)
    assert traffic.failures == []
    assert traffic.answers["a"] > 0
    assert traffic.answers["b"] > 100


def test_stopping_a_target_in_rotation_fails_requests(site):
    instance_id = next(i for i, b in site.backends.items() if b.name == "b")
    backend = site.backends[instance_id]
    with Traffic(site.url) as traffic:
        time.sleep(0.5)
        backend.stop()
        time.sleep(1)
    backend.start()
    assert traffic.failures, "stopping a target that still gets traffic must fail requests (no retries)"
    assert {502, 503} & set(traffic.failures)  # besides connections HAProxy closes without an answer
    site.wait_state(instance_id, "healthy", timeout=6 * INTERVAL)


def test_a_new_listener_restarts_haproxy_without_failing_a_request_and_https_and_redirect_work(site):
    certificate = site.aws.client("acm").request_certificate(DomainName="shop.example.com")["CertificateArn"]
    forward = [{"Type": "forward", "TargetGroupArn": site.tg_arn}]
    pid = site.record["pid"]
    # New connections: no listening socket closes, but the old HAProxy closes its idle keep-alive client
    # connections as it stops (HAProxy 2.6), which a client may meet with a request already sent.
    with Traffic(site.url, keep_alive=False) as traffic:
        time.sleep(0.5)
        site.elb.create_listener(
            LoadBalancerArn=site.lb_arn,
            Protocol="HTTPS",
            Port=443,
            Certificates=[{"CertificateArn": certificate}],
            DefaultActions=forward,
        )
        time.sleep(1)
    assert traffic.failures == []
    assert sum(traffic.answers.values()) > 50
    record = site.record
    assert record["pid"] != pid
    wait_for(lambda: not alive(pid), 10, "the old HAProxy to finish")
    http_url, https_url = (listener["url"] for listener in record["listeners"])
    assert https_url.startswith("https://127.0.0.1:")
    insecure = ssl._create_unverified_context()  # the stand-in's own self-signed certificate
    with urllib.request.urlopen(https_url + "/", context=insecure, timeout=10) as response:
        assert response.read().decode() in {"a", "b"}

    (listener_80,) = (
        listener
        for listener in site.elb.describe_listeners(LoadBalancerArn=site.lb_arn)["Listeners"]
        if listener["Port"] == 80
    )
    redirect = {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}
    site.elb.modify_listener(
        ListenerArn=listener_80["ListenerArn"], DefaultActions=[{"Type": "redirect", "RedirectConfig": redirect}]
    )
    assert site.record["listeners"][0]["url"] == http_url  # the port stays
    connection = http.client.HTTPConnection(*http_url.removeprefix("http://").split(":"), timeout=10)
    connection.request("GET", "/menu?page=2")
    response = connection.getresponse()
    assert (response.status, response.getheader("Location")) == (301, https_url + "/menu?page=2")


def test_deleting_the_load_balancer_stops_its_haproxy(site):
    pid = site.record["pid"]
    site.elb.delete_load_balancer(LoadBalancerArn=site.lb_arn)
    assert not (site.state / "load-balancers" / "shop.json").exists()
    wait_for(lambda: not alive(pid), 5, "HAProxy to stop")


def test_haproxies_stop_at_reset_at_exit_and_after_a_killed_server(tmp_path):
    process, aws = start_server(tmp_path)
    try:
        create_load_balancer(aws, "one")
        record = tmp_path / "load-balancers" / "one.json"
        pid = json.loads(record.read_text())["pid"]
        assert alive(pid)
        other, _ = start_server(tmp_path)  # a second server on this state directory leaves it alone
        other.terminate()
        other.wait(timeout=15)
        assert alive(pid)
        assert record.exists()
        aws.reset()
        assert not record.exists()
        wait_for(lambda: not alive(pid), 5, "HAProxy to stop at reset")

        create_load_balancer(aws, "two")
        pid = json.loads((tmp_path / "load-balancers" / "two.json").read_text())["pid"]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert not alive(pid)

        process, aws = start_server(tmp_path)
        create_load_balancer(aws, "three")
        pid = json.loads((tmp_path / "load-balancers" / "three.json").read_text())["pid"]
        process.kill()  # no atexit: its HAProxy stays until the next server of this state directory starts
        process.wait()
        assert alive(pid)
        process, aws = start_server(tmp_path)
        assert not alive(pid)
        assert not (tmp_path / "load-balancers" / "three.json").exists()
    finally:
        process.terminate()
        process.wait(timeout=15)


def haproxies_of(state: Path) -> set[int]:
    """The live HAProxy processes that run a configuration of that state directory (current or finishing)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            arguments = cmdline.read_bytes().split(b"\0")
            pid = int(cmdline.parent.name)
            if arguments[0].endswith(b"haproxy") and any(str(state).encode() in a for a in arguments) and alive(pid):
                found.add(pid)
    return found


def terminate_timed(process: subprocess.Popen) -> float:
    """SIGTERM the server, as the session's fixture does; the seconds it took to exit (killed after 30)."""
    started = time.monotonic()
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - started


def clean_up(process: subprocess.Popen, site: Site, state: Path) -> None:
    """After a test that may have failed: the server and its HAProxies gone (by PID), the backends stopped."""
    if process.poll() is None:
        process.kill()
        process.wait()
    for pid in haproxies_of(state):
        os.kill(pid, signal.SIGKILL)  # a stopped process too
    for backend in site.backends.values():
        backend.release.set()
        backend.stop()


def test_sigterm_ends_the_server_within_seconds_and_every_haproxy_with_it(tmp_path):
    """Targets under health checks, one of them draining with a request in flight, and the HAProxy that a
    restart replaced still finishing that request: the server exits at once, and no HAProxy of it stays."""
    process, aws = start_server(tmp_path)
    site = Site(aws, tmp_path, "exiting")
    try:
        for name in ("a", "b", "c"):
            site.register(site.instance(name))
        for instance_id in site.backends:
            site.wait_state(instance_id, "healthy")
        site.elb.modify_target_group_attributes(
            TargetGroupArn=site.tg_arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "300"}]
        )

        def held_request() -> None:
            with contextlib.suppress(OSError):  # cut when the HAProxy stops
                urllib.request.urlopen(site.url + "/hold", timeout=60).close()

        threading.Thread(target=held_request, daemon=True).start()
        held = wait_for(
            lambda: next((i for i, b in site.backends.items() if b.holding.is_set()), None), 10, "a request in flight"
        )
        site.deregister(held)
        assert site.health(held)[held][0] == "draining"
        old = site.record["pid"]
        # A health check change restarts the HAProxy: the old one goes on with the draining target's request.
        site.elb.modify_target_group(TargetGroupArn=site.tg_arn, HealthCheckIntervalSeconds=INTERVAL + 1)
        new = site.record["pid"]
        assert new != old
        assert haproxies_of(tmp_path) == {old, new}

        assert terminate_timed(process) < 5
        assert haproxies_of(tmp_path) == set()
    finally:
        clean_up(process, site, tmp_path)


def test_an_haproxy_that_stops_answering_holds_the_exit_up_no_longer(tmp_path):
    """A hung HAProxy (stopped: its admin socket and SIGTERM go unanswered) while DescribeTargetHealth calls wait
    on that socket, the lock held: the server still exits within seconds, and the HAProxy is killed."""
    process, aws = start_server(tmp_path)
    site = Site(aws, tmp_path, "hung")
    try:
        for name in ("a", "b"):
            site.register(site.instance(name))
        for instance_id in site.backends:
            site.wait_state(instance_id, "healthy")
        pid = site.record["pid"]
        os.kill(pid, signal.SIGSTOP)

        def ask_until_gone() -> None:
            with contextlib.suppress(Exception):  # botocore's error once the server is gone
                while True:
                    site.health()

        threading.Thread(target=ask_until_gone, daemon=True).start()
        time.sleep(1)  # a DescribeTargetHealth now waits on the admin socket

        assert terminate_timed(process) < 5
        assert not alive(pid)
        assert haproxies_of(tmp_path) == set()
    finally:
        clean_up(process, site, tmp_path)
