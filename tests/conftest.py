"""Fixtures shared by the playbook tests: a private embedded AWS and a way to run playbooks against it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# What a module whose tests boot sandbox hosts (sandbox/hosts) needs: `pytestmark = NEEDS_SANDBOX_HOSTS`.
NEEDS_SANDBOX_HOSTS = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts need root (mounts, namespaces, iptables)"),
    pytest.mark.skipif(
        shutil.which("systemd-nspawn") is None, reason="systemd-nspawn is missing: run sandbox/install-host-deps"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EmbeddedAws:
    endpoint: str

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def s3control(self):
        """S3 Control on this server: botocore puts the account id before the endpoint's host
        (123456789012.127.0.0.1), a name that does not resolve; the request goes to the server itself."""
        client = self.client("s3control")

        def to_server(request, **_):
            request.url = re.sub(r"//\d{12}\.", "//", request.url, count=1)
            assert urllib.parse.urlsplit(request.url).hostname == "127.0.0.1", request.url  # no DNS lookup

        client.meta.events.register("before-sign.s3-control", to_server)
        return client

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def _realism_call(self, path: str, document: dict | None = None) -> dict:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(
            f"{self.endpoint}/_realism{path}", data=data, method="GET" if data is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def realism(self, **settings) -> dict:
        """Merge settings into the unkind mode (delays in seconds, foreign_buckets, unoffered); the current ones."""
        return self._realism_call("", settings if settings else None)["settings"]

    def remove_default_vpc(self, region: str = "us-east-1") -> dict:
        """Delete the region's default VPC (unkind mode only); what was deleted."""
        return self._realism_call("/remove-default-vpc", {"region": region})

    @property
    def realism_enabled(self) -> bool:
        """True when the server runs in the unkind mode (SANDBOX_AWS_REALISM=1)."""
        try:
            return self._realism_call("")["enabled"] is True
        except (OSError, ValueError, KeyError, TypeError):  # plain moto has no /_realism
            return False

    def project_resources(self, project: str) -> dict[str, list[str]]:
        """Everything tagged with the project (or named after it), by kind; empty lists when clean."""
        ec2, s3, iam = self.client("ec2"), self.client("s3"), self.client("iam")
        tag_filter = [{"Name": "tag:Project", "Values": [project]}]
        instances = [
            i["InstanceId"]
            for r in ec2.describe_instances(Filters=tag_filter)["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] != "terminated"
        ]
        return {
            "instances": instances,
            "security_groups": [
                g["GroupId"] for g in ec2.describe_security_groups(Filters=tag_filter)["SecurityGroups"]
            ],
            "key_pairs": [
                k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith(project)
            ],
            "roles": [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(project)],
            "instance_profiles": [
                p["InstanceProfileName"]
                for p in iam.list_instance_profiles()["InstanceProfiles"]
                if p["InstanceProfileName"].startswith(project)
            ],
            "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"] if project in b["Name"]],
            "distributions": [
                d["Id"]
                for d in self.client("cloudfront").list_distributions()["DistributionList"].get("Items") or []
                if d["Comment"].startswith(project)
            ],
            "origin_access_controls": [
                c["Name"]
                for c in self.client("cloudfront").list_origin_access_controls()["OriginAccessControlList"].get("Items")
                or []
                if c["Name"].startswith(project)
            ],
        }

    def is_empty(self) -> bool:
        """True when the account holds nothing but what a fresh region has."""
        ec2, s3, iam = self.client("ec2"), self.client("s3"), self.client("iam")
        reservations = ec2.describe_instances()["Reservations"]
        groups = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
        return (
            not reservations
            and set(groups) <= {"default"}
            and not ec2.describe_key_pairs()["KeyPairs"]
            and not s3.list_buckets()["Buckets"]
            and not iam.list_roles()["Roles"]
        )


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots qemu VMs (slow; SANDBOX_VM_TESTS=1 runs them)")


# Under pytest-xdist (`make test-playbooks`: `-n 3 --dist loadfile --no-loadscope-reorder`) each worker has
# an embedded AWS of its own, and the tests of one module stay on one worker, in their order, so that a
# module-scoped stack (the load balancer's fleet) is made once and a module's project name is used by one
# worker at a time (sandbox hosts and load balancers are named after it). The modules are handed out in
# this order, the longest first; the others follow in their own order. (Not `loadgroup`: xdist 3.8 marks
# a group by rewriting `item._nodeid`, which pytest 9 no longer reads.)
SLOWEST_MODULES_FIRST = (
    "test_load_balancer",
    "test_load_balancer_rotation",
    "test_booted_stack",
    "test_any_controller",
    "test_installed_collection",
    "test_cost_guardrails",
    "test_first_run",
    "test_provision",
    "test_operator_policy",
    "test_backup_restore",
    "test_drift",
)


def pytest_collection_modifyitems(config, items):
    rank = {module: index for index, module in enumerate(SLOWEST_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the order within a module is kept


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """What predicate() answers once it is true; fails naming what was awaited after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return result


@contextlib.contextmanager
def embedded_aws_server(realism: bool | None, **environment: str):
    """A server of our own on a free loopback port, stopped by its PID at the end.

    realism None: as SANDBOX_AWS_REALISM in the environment says (CI sets it). True or False: the unkind
    mode or plain moto whatever the environment says, its SANDBOX_AWS_REALISM_* settings dropped (so
    AWS's own delays) and `environment` added.
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, MOTO_AMIS_PATH=str(REPO / "sandbox" / "amis.json"))
    if realism is not None:
        env = {k: v for k, v in env.items() if not k.startswith("SANDBOX_AWS_REALISM")}
        env.update(environment)
        if realism:
            env["SANDBOX_AWS_REALISM"] = "1"
    server = subprocess.Popen(
        [sys.executable, str(REPO / "sandbox" / "embedded_aws_server.py"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the embedded AWS did not start") from None
                time.sleep(0.2)
        yield EmbeddedAws(endpoint)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Never leave it (and its HAProxies) running; a slow exit is the server's bug, not the tests'.
            server.kill()
            server.wait()
            warnings.warn(f"the embedded AWS on {endpoint} did not exit within 10 s of SIGTERM", stacklevel=1)


@pytest.fixture(scope="session")
def embedded_aws():
    """The embedded AWS of most tests: unkind when SANDBOX_AWS_REALISM=1 (as in CI), else plain moto."""
    with embedded_aws_server(realism=None) as server:
        yield server


@pytest.fixture(scope="session")
def unkind_embedded_aws():
    """The embedded AWS in its unkind mode with AWS's own delays, whatever the environment says."""
    with embedded_aws_server(realism=True) as server:
        yield server


@pytest.fixture
def unkind_aws(unkind_embedded_aws):
    """The unkind embedded AWS, emptied before the test."""
    unkind_embedded_aws.reset()
    return unkind_embedded_aws


@pytest.fixture
def aws(embedded_aws):
    """The embedded AWS, emptied before the test."""
    embedded_aws.reset()
    return embedded_aws


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    @property
    def text(self) -> str:
        """The output with line wrapping folded away, for matching sentences."""
        return " ".join(self.output.split())

    @property
    def recaps(self) -> dict[str, dict[str, int]]:
        """Every host's line of the PLAY RECAP, as numbers."""
        found = {}
        for line in self.output.splitlines():
            match = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
            if match:
                found[match.group(1)] = {k: int(v) for k, v in (p.split("=") for p in match.group(2).split())}
        assert found, self.output[-3000:]
        return found

    @property
    def recap(self) -> dict[str, int]:
        """The localhost line of the PLAY RECAP, as numbers."""
        for line in self.output.splitlines():
            if line.startswith("localhost") and "ok=" in line:
                return {k: int(v) for k, v in (part.split("=") for part in line.split()[2:])}
        raise AssertionError(f"no recap in output:\n{self.output[-3000:]}")


def sandbox_dynamic_inventory(endpoint: str, project: str) -> str:
    """The sandbox's dynamic inventory (inventory/sandbox/aws_ec2.yml), pointed at that embedded AWS and project."""
    source = (REPO / "inventory" / "sandbox" / "aws_ec2.yml").read_text()
    return source.replace("http://127.0.0.1:5000", endpoint).replace(
        "tag:Project: coffee-ranker", f"tag:Project: {project}"
    )


def _playbook_runner(aws: EmbeddedAws, tmp_path: Path):
    """Run a playbook of this repository against that embedded AWS, with a sandbox-like inventory."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(REPO / "inventory" / "sandbox" / "group_vars")
    (inventory / "hosts.yml").write_text("all: {}\n")
    secrets = tmp_path / "secrets"

    def run(playbook: str, *args: str, extra_vars: dict | None = None, boot_hosts: bool = False) -> PlaybookRun:
        """boot_hosts: give instances sandbox hosts (root, nspawn); most tests need only the AWS side."""
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook)]
        variables = {
            "controller_secrets_dir": str(secrets),
            "machines_role": "sandbox_hosts" if boot_hosts else "",
            **(extra_vars or {}),
        }
        command += ["-e", json.dumps(variables), *args]
        env = dict(os.environ, SANDBOX_AWS_ENDPOINT=aws.endpoint, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        return PlaybookRun(done.returncode, done.stdout + done.stderr)

    def use_dynamic_inventory(project: str) -> None:
        """Find the instances by tag from now on, as `-i inventory/sandbox` does (day-2 playbooks need it)."""
        (inventory / "aws_ec2.yml").write_text(sandbox_dynamic_inventory(aws.endpoint, project))

    run.inventory = inventory
    run.secrets = secrets
    run.use_dynamic_inventory = use_dynamic_inventory
    return run


@pytest.fixture
def run_playbook(aws, tmp_path):
    """Run a playbook against the embedded AWS (`aws`)."""
    return _playbook_runner(aws, tmp_path)


@pytest.fixture(scope="module")
def module_playbook_runner(embedded_aws, tmp_path_factory):
    """run_playbook for a module whose tests share one stack (a fleet, made once): the embedded AWS is
    emptied once, before the module's first test that asks for it, not before each."""
    embedded_aws.reset()
    return _playbook_runner(embedded_aws, tmp_path_factory.mktemp("module"))


@pytest.fixture
def run_unkind_playbook(unkind_aws, tmp_path):
    """Run a playbook against the unkind embedded AWS (`unkind_aws`)."""
    return _playbook_runner(unkind_aws, tmp_path)


# One task of this collection's AWS modules, registered as `module_answer`, and what it answered written
# for the test (run_module).
MODULE_PLAYBOOK = """
- name: Run one module of the collection for a test
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/coffeeshop.ranker.aws: "{{{{ aws_connection }}}}"
  environment: "{{{{ aws_environment }}}}"
  tasks:
{task}

    - name: Keep what the module answered for the test
      ansible.builtin.copy:
        content: "{{{{ module_answer | to_json }}}}"
        dest: "{{{{ module_answer_file }}}}"
        mode: "0600"
      check_mode: false
      changed_when: false
"""


@pytest.fixture
def run_module(run_playbook, tmp_path):
    """Run one module task (YAML that registers `module_answer`) against the embedded AWS, with these
    ansible-playbook arguments and extra vars: the run, and what the module answered."""
    playbook, answer = tmp_path / "module.yml", tmp_path / "module-answer.json"

    def run(task: str, *args: str, extra_vars: dict | None = None) -> tuple[PlaybookRun, dict]:
        playbook.write_text(MODULE_PLAYBOOK.format(task=textwrap.indent(textwrap.dedent(task).strip(), "    ")))
        answer.unlink(missing_ok=True)
        done = run_playbook(str(playbook), *args, extra_vars={**(extra_vars or {}), "module_answer_file": str(answer)})
        assert done.returncode == 0, done.output[-3000:]
        return done, json.loads(answer.read_text())

    return run
