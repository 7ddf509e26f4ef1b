"""Fixtures shared by the playbook tests: a private embedded AWS and a way to run playbooks against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


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

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

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


@pytest.fixture(scope="session")
def embedded_aws():
    """A moto server of our own on a free loopback port, stopped by its PID at the end."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, MOTO_AMIS_PATH=str(REPO / "sandbox" / "amis.json"))
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
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
        server.wait(timeout=10)


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
    def recap(self) -> dict[str, int]:
        """The localhost line of the PLAY RECAP, as numbers."""
        for line in self.output.splitlines():
            if line.startswith("localhost") and "ok=" in line:
                return {k: int(v) for k, v in (part.split("=") for part in line.split()[2:])}
        raise AssertionError(f"no recap in output:\n{self.output[-3000:]}")


@pytest.fixture
def run_playbook(aws, tmp_path):
    """Run a playbook of this repository against the embedded AWS, with a sandbox-like inventory."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(REPO / "inventory" / "sandbox" / "group_vars")
    (inventory / "hosts.yml").write_text("all: {}\n")
    secrets = tmp_path / "secrets"

    def run(playbook: str, *args: str, extra_vars: dict | None = None, boot_hosts: bool = False) -> PlaybookRun:
        """boot_hosts: give instances sandbox hosts (root, nspawn); most tests need only the AWS side."""
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook)]
        variables = {"controller_secrets_dir": str(secrets), "sandbox_enabled": boot_hosts, **(extra_vars or {})}
        command += ["-e", json.dumps(variables), *args]
        env = dict(os.environ, SANDBOX_AWS_ENDPOINT=aws.endpoint, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        return PlaybookRun(done.returncode, done.stdout + done.stderr)

    run.inventory = inventory
    run.secrets = secrets
    return run
