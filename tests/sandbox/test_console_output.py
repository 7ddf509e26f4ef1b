"""GetConsoleOutput answers with the console of the instance's sandbox machine, as EC2 does.

The playbooks pin an instance's SSH host keys from cloud-init's block in its console output before the
first SSH connection. These tests boot one real sandbox host (root, systemd-nspawn) for an instance of an
embedded AWS of their own, named ranker-console-<instance id> and stopped by name at the end, and check
that the console output holds the ed25519 key that host's sshd really serves. The unkind mode's
``console_delay`` and the 64 KiB tail are checked on machine records of their own (a host's and a VM's:
the lookup is one for both kinds), in a state directory of their own.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import embedded_aws_server, wait_for
from moto.ec2.responses.general import SAMPLE_CONSOLE_OUTPUT
from sandbox_cli import SandboxTool

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "sandbox"))
from console_output import CONSOLE_LIMIT, encoded_tail, with_console  # noqa: E402

STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO_ROOT / ".sandbox").resolve()
PROJECT = "ranker-console"
NOBLE = "ami-02ecac1fbf21dc85a"
EC2_NS = "{http://ec2.amazonaws.com/doc/2016-11-15}"
KEY_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----\r?\n(.*?)-----END SSH HOST KEY KEYS-----", re.DOTALL)
MOTO_ANSWER = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<GetConsoleOutputResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15">'
    b"<instanceId>i-0123456789abcdef0</instanceId><timestamp>2026-12-05T14:34:23.000Z</timestamp>"
    b"<output>bW90bw==</output><requestId>request-id</requestId></GetConsoleOutputResponse>"
)

hosts = SandboxTool(REPO_ROOT / "sandbox" / "hosts", STATE_DIR / "hosts", timeout=300)
needs_hosts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("systemd-nspawn") is None,
    reason="sandbox hosts need root and systemd-nspawn (sandbox/install-host-deps)",
)


def launch(ec2) -> str:
    (instance,) = ec2.run_instances(ImageId=NOBLE, MinCount=1, MaxCount=1, InstanceType="t2.micro")["Instances"]
    return instance["InstanceId"]


def console_of(ec2, instance_id: str) -> str | None:
    """The console output (botocore decodes EC2's base64), None when the answer has none."""
    answer = ec2.get_console_output(InstanceId=instance_id)
    assert answer["InstanceId"] == instance_id
    assert isinstance(answer["Timestamp"], datetime)
    return answer.get("Output")


def stop_our_hosts() -> None:
    directory = STATE_DIR / "hosts"
    ours = [entry.name for entry in directory.glob(f"{PROJECT}-i-*")] if directory.is_dir() else []
    if ours:
        hosts("stop", *ours)


# --- the answer's shape (no server)


def test_the_output_is_the_last_64_kib_base64_encoded():
    console = b"boot\r\n" + bytes(range(256)) * 300  # 76 KiB, not all of it text
    assert base64.b64decode(encoded_tail(console)) == console[-CONSOLE_LIMIT:]
    assert base64.b64decode(encoded_tail(b"short\r\n")) == b"short\r\n"


def test_the_console_replaces_motos_output_and_timestamp_only():
    updated = datetime(2026, 12, 6, 8, 9, 10, tzinfo=UTC)
    answer = ET.fromstring(with_console(MOTO_ANSWER, b"x" * (CONSOLE_LIMIT + 10), updated))
    assert answer.tag == f"{EC2_NS}GetConsoleOutputResponse"
    fields = [(child.tag.removeprefix(EC2_NS), child.text) for child in answer]
    assert [name for name, _ in fields] == ["instanceId", "timestamp", "output", "requestId"]  # moto's order
    assert fields[0] == ("instanceId", "i-0123456789abcdef0")
    assert fields[1] == ("timestamp", "2026-12-06T08:09:10.000Z")
    assert base64.b64decode(fields[2][1]) == b"x" * CONSOLE_LIMIT
    assert fields[3] == ("requestId", "request-id")
    empty = ET.fromstring(with_console(MOTO_ANSWER, b"", updated))
    assert empty.find(f"{EC2_NS}output") is None  # no console yet: no element, as EC2 answers


# --- a real sandbox host


@pytest.fixture(scope="module")
def kind_aws():
    with embedded_aws_server(realism=False) as server:
        yield server


@pytest.fixture(scope="module")
def host(kind_aws, tmp_path_factory):
    """A sandbox host booted for an instance of kind_aws: (instance id, the host as `start` prints it)."""
    stop_our_hosts()  # a killed earlier run's
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    instance_id = launch(kind_aws.client("ec2"))
    try:
        machine = hosts.start(f"{PROJECT}-{instance_id}", key.with_suffix(".pub"), "--instance-id", instance_id)
        yield instance_id, machine
    finally:
        stop_our_hosts()


@needs_hosts
def test_console_output_holds_the_ed25519_key_sshd_serves(kind_aws, host):
    instance_id, machine = host
    console = console_of(kind_aws.client("ec2"), instance_id)
    assert console is not None
    block = KEY_BLOCK.search(console)
    assert block, f"no host key block in the console output:\n{console[-2000:]}"
    printed = {line.split()[0]: line.split()[1] for line in block.group(1).splitlines() if line.strip()}
    scanned = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "ed25519", machine["address"]], capture_output=True, text=True, check=True
    ).stdout.split()
    assert scanned[1:3] == ["ssh-ed25519", printed["ssh-ed25519"]]


@needs_hosts
def test_an_instance_without_a_machine_gets_motos_answer(kind_aws, host):
    ec2 = kind_aws.client("ec2")
    assert console_of(ec2, launch(ec2)) == SAMPLE_CONSOLE_OUTPUT


# --- the unkind mode


@pytest.mark.parametrize("kind", ["hosts", "vms"])
def test_the_unkind_mode_has_no_output_for_console_delay_seconds(tmp_path, kind):
    # Long enough that the first read comes before it even beside other suites on two cores (3 s did not).
    delay = 10
    with embedded_aws_server(
        realism=True, SANDBOX_AWS_REALISM_CONSOLE_DELAY=str(delay), SANDBOX_STATE_DIR=str(tmp_path)
    ) as aws:
        assert aws.realism()["console_delay"] == delay
        ec2 = aws.client("ec2")
        launched = time.monotonic()
        instance_id = launch(ec2)
        machine = tmp_path / kind / f"{PROJECT}-{instance_id}"  # as sandbox/hosts or sandbox/vms record one
        machine.mkdir(parents=True)
        (machine / "host.json").write_text(json.dumps({"name": machine.name, "instance_id": instance_id}))
        console = "".join(f"[{n:6}] booting\r\n" for n in range(5000)) + "the last line\r\n"  # over 64 KiB
        (machine / "console.log").write_text(console)

        assert console_of(ec2, instance_id) is None
        time.sleep(max(0.0, launched + delay / 2 - time.monotonic()))
        assert console_of(ec2, instance_id) is None  # still none halfway through the delay
        # Then it comes: polled, since the server counts from its own launch, a busy machine's moment later.
        output = wait_for(lambda: console_of(ec2, instance_id), 60, "the console output after the delay")
        assert time.monotonic() - launched >= delay
        assert output == console.encode()[-CONSOLE_LIMIT:].decode()
        assert output.endswith("the last line\r\n")
        assert console_of(ec2, launch(ec2)) is None  # a new instance: none again
