"""A fleet behind the sandbox's load balancer, and clients that keep asking it, for the modules that prove
the day-2 jobs without one failed request (test_load_balancer.py, test_load_balancer_rotation.py).

Each of those modules has a fleet and a project of its own, so that they run side by side (pytest-xdist
hands a module to one worker): the load balancer and the sandbox hosts are named after the project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox")
# What changes when a host reboots: its kernel's boot id (a VM) and the start of its PID 1 (a container).
BOOT_ID = "cat /proc/sys/kernel/random/boot_id; awk '{print $22}' /proc/1/stat"
NEEDS_HOSTS = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts (systemd-nspawn) need root"),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is missing: run sandbox/install-host-deps"),
]


class Traffic:
    """Clients that keep asking the load balancer for the shop list, each request on a new connection;
    with write_token (a callable that gives the token as a client would read it), one more that keeps
    adding shops."""

    def __init__(self, url: str, clients: int = 2, write_token=None) -> None:
        self.url = url.rstrip("/") + "/shops"
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.written = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        if write_token:
            self.threads.append(threading.Thread(target=self._writer, args=(write_token,), daemon=True))

    def _ask(self, request: urllib.request.Request | str, expected: int) -> str | None:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return None if response.status == expected else f"status {response.status}"
        except urllib.error.HTTPError as error:
            return f"status {error.code}: {error.read()[:200]!r}"
        except OSError as error:
            return f"{type(error).__name__}: {error}"

    def _record(self, failure: str | None, write: bool = False) -> None:
        with self.lock:
            self.sent += 1
            self.written += write and not failure
            if failure:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {'POST' if write else 'GET'} {failure}")

    def _client(self) -> None:
        while not self.stop_event.is_set():
            self._record(self._ask(self.url, 200))
            time.sleep(0.05)

    def _writer(self, write_token) -> None:
        while not self.stop_event.is_set():
            body = json.dumps({"name": f"Traffic {time.time()}", "address": "Load balancer test"}).encode()
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {write_token()}"},
            )
            self._record(self._ask(request, 201), write=True)
            time.sleep(0.3)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def assert_none_failed(self, at_least: int) -> None:
        """At least that many requests were answered during the run, and not one failed."""
        assert self.sent > at_least, self.sent
        assert self.failures == [], (self.sent, self.failures[:20])


def load_balancer_url(project: str) -> str:
    """The URL of the project's load balancer, from the sandbox's record of it."""
    record = json.loads((STATE_DIR / "load-balancers" / f"{project}-api.json").read_text())
    return next(listener["url"] for listener in record["listeners"] if listener["protocol"] == "HTTP")


def running_ids(aws, project: str) -> set[str]:
    reservations = aws.client("ec2").describe_instances(
        Filters=[{"Name": "tag:Project", "Values": [project]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )["Reservations"]
    return {i["InstanceId"] for r in reservations for i in r["Instances"]}


def targets(aws, project: str) -> dict[str, str]:
    elb = aws.client("elbv2")
    group = elb.describe_target_groups(Names=[f"{project}-api"])["TargetGroups"][0]
    health = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
    return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in health}


def changed_build(tmp_path: Path) -> Path:
    """A copy of the service whose source differs by one comment: a new build to roll out."""
    copy = tmp_path / "service"
    for part in ("src", "tools", "pyproject.toml", "README.md", "requirements.lock"):
        source = REPO / "service" / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, copy / part)
    init = copy / "src" / "coffee_ranker" / "__init__.py"
    init.write_text(init.read_text() + f"\n# build of the load balancer test, {time.time()}\n")
    return copy


class Fleet:
    """site.yml and the day-2 playbooks against one stack of a module (`base`: its variables, the
    project's name among them), with sandbox hosts and the sandbox's dynamic inventory (the day-2
    playbooks find the instances by tag)."""

    def __init__(self, runner, aws, base: dict, build_dir: Path | None = None) -> None:
        self.runner, self.aws, self.base = runner, aws, base
        self.project = base["project_name"]
        # The extra variables of a changed build (changed_build), for the runs that build the service.
        self.build = {"api_service_source_dir": str(build_dir)} if build_dir else {}
        self.instances: set[str] = set()
        self.url = ""
        runner.use_dynamic_inventory(self.project)

    def run(self, playbook: str, *args: str, **extra_vars):
        return self.runner(playbook, *args, extra_vars={**self.base, **extra_vars}, boot_hosts=True)

    def teardown(self):
        return self.run("playbooks/teardown.yml", teardown_delete_data=True)

    def running(self) -> set[str]:
        return running_ids(self.aws, self.project)

    def targets(self) -> dict[str, str]:
        return targets(self.aws, self.project)

    def key(self) -> Path:
        return self.runner.secrets / "ssh" / self.project

    def token(self) -> str:
        """The write token as a client reads it: from the account, each time."""
        ssm = self.aws.client("ssm")
        name = f"/{self.project}/api/write-token"
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]

    def ssh(self, instance_id: str, key: Path, command: str) -> subprocess.CompletedProcess:
        """A login as the instances' user with that private key, checking the pinned host key."""
        record = json.loads(next(STATE_DIR.glob(f"hosts/{self.project}-{instance_id}/host.json")).read_text())
        known_hosts = self.runner.secrets / "ssh" / f"{self.project}.known_hosts"
        return subprocess.run(
            ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", f"HostKeyAlias={instance_id}", "-o",
             "StrictHostKeyChecking=yes", f"{record['user']}@{record['address']}", command],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def write_with(self, token: str) -> int:
        """The status of a shop written through the load balancer with that token."""
        request = urllib.request.Request(
            self.url + "/shops",
            data=json.dumps({"name": "Token probe", "address": "Load balancer test"}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def assert_serving(self) -> None:
        """The same instances run, each healthy by the load balancer's own checks."""
        assert self.running() == self.instances
        assert self.targets() == dict.fromkeys(self.instances, "healthy")


def needs_hosts(test):
    for mark in NEEDS_HOSTS:
        test = mark(test)
    return test
