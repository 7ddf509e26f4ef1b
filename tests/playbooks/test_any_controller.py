"""Any controller, one stack: secrets, host key pins and the operator's address live with the stack.

One instance on a sandbox host, against one embedded AWS, run from three controllers:
- A: this checkout, with a secrets folder of its own (the conftest runner);
- B: a second copy of the repository (another clone: its own ansible.cfg, fact cache and .secrets/);
- C: this checkout again with an empty secrets folder (a CI runner, AWX: nothing local).
They share the embedded AWS and the sandbox hosts (SANDBOX_STATE_DIR), as clones share an account.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import VENV_BIN, PlaybookRun, _playbook_runner

REPO = Path(__file__).resolve().parents[2]
PROJECT = "ranker-team"
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox")
# An address range the controller does not connect from (the sandbox hosts see it in 10.213.0.0/16):
# the operator's old address, after which the run comes from the new one.
OLD_ADMIN_CIDR = "172.31.0.0/16"
NEW_ADMIN_CIDR = "10.213.0.0/16"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".sandbox", ".secrets", ".ansible", "__pycache__", "*.egg-info")


def instance_changes(run: PlaybookRun) -> dict[str, int]:
    return {host: recap["changed"] for host, recap in run.recaps.items() if host.startswith("i-")}


def changed_tasks(run: PlaybookRun) -> list[str]:
    """The tasks that reported a change on an instance, for an assertion's message."""
    task, found = "", []
    for line in run.output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed: [i-"):
            found.append(task)
    return found


def host_record(instance_id: str) -> dict:
    return json.loads((STATE_DIR / "hosts" / f"{PROJECT}-{instance_id}" / "host.json").read_text())


def on_host(instance_id: str, key: Path, command: str) -> str:
    """A command on the sandbox host as its login user, host key unchecked (the test's own back door)."""
    record = host_record(instance_id)
    done = subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", f"{record['user']}@{record['address']}", command],
        capture_output=True, text=True, timeout=60, check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout


def shop_created(endpoint: str, token: str) -> int:
    """POST /shops with that token, then remove the shop again; the POST's status."""
    request = urllib.request.Request(
        f"{endpoint}/shops",
        data=json.dumps({"name": "Team check", "address": "1 Shared St"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            shop = json.load(response)
            status = response.status
    except urllib.error.HTTPError as error:
        return error.code
    delete = urllib.request.Request(
        f"{endpoint}/shops/{shop['id']}", headers={"Authorization": f"Bearer {token}"}, method="DELETE"
    )
    urllib.request.urlopen(delete, timeout=10).close()
    return status


@pytest.fixture
def controllers(aws, tmp_path):
    """Three controllers of one stack (A, B, C above); everything is torn down at the end."""
    for runner in ("a-runner", "c-runner"):
        (tmp_path / runner).mkdir()
    a = _playbook_runner(aws, tmp_path / "a-runner")
    a.use_dynamic_inventory(PROJECT)
    c = _playbook_runner(aws, tmp_path / "c-runner")
    c.use_dynamic_inventory(PROJECT)
    clone = tmp_path / "clone"
    shutil.copytree(REPO, clone, ignore=COPY_IGNORE, symlinks=True)
    (clone / "inventory" / "sandbox" / "aws_ec2.yml").write_text(
        (a.inventory / "aws_ec2.yml").read_text()
    )  # fmt: skip

    def run_a(playbook: str, *args: str, **extra_vars) -> PlaybookRun:
        return a(playbook, *args, extra_vars={"project_name": PROJECT, **extra_vars}, boot_hosts=True)

    def run_c(playbook: str, *args: str, **extra_vars) -> PlaybookRun:
        return c(playbook, *args, extra_vars={"project_name": PROJECT, **extra_vars}, boot_hosts=True)

    def run_b(playbook: str, *args: str) -> PlaybookRun:
        """The second clone, as its operator runs it: its own directory, ansible.cfg and .secrets/."""
        env = dict(
            os.environ,
            SANDBOX_AWS_ENDPOINT=aws.endpoint,
            SANDBOX_STATE_DIR=str(STATE_DIR),
            ANSIBLE_CONFIG=str(clone / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
        )
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        command = [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            "inventory/sandbox",
            playbook,
            "-e",
            f"project_name={PROJECT}",
        ]
        done = subprocess.run([*command, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        return PlaybookRun(done.returncode, done.stdout + done.stderr)

    yield {"a": run_a, "b": run_b, "c": run_c, "a_secrets": a.secrets, "c_secrets": c.secrets, "clone": clone}
    # A teardown opens nothing and needs no admin address.
    torn_down = run_a("playbooks/teardown.yml", teardown_delete_data=True, ssh_admin_cidr="")
    assert torn_down.returncode == 0, torn_down.output[-3000:]


@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts (systemd-nspawn) need root")
def test_several_controllers_run_one_stack_without_breaking_each_other(controllers, aws):
    run_a, run_b, run_c = controllers["a"], controllers["b"], controllers["c"]
    a_secrets, clone = controllers["a_secrets"], controllers["clone"]

    # A makes the stack while the operator's address is the old one (monitoring stays where it is: the
    # metrics ports' host rules follow monitoring_cidr, which the later runs leave at its default).
    first = run_a("site.yml", ssh_admin_cidr=OLD_ADMIN_CIDR, monitoring_cidr=NEW_ADMIN_CIDR)
    assert first.returncode == 0, first.output[-5000:]
    (instance_id,) = instance_changes(first)
    token = (a_secrets / f"{PROJECT}.api-write-token").read_text().strip()
    private_key = (a_secrets / "ssh" / PROJECT).read_bytes()
    ssm = aws.client("ssm")
    stored = ssm.get_parameter(Name=f"/{PROJECT}/api/write-token", WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString"
    assert stored["Value"] == token
    assert ssm.get_parameter(Name=f"/{PROJECT}/ssh/private-key", WithDecryption=True)["Parameter"]["Value"] == (
        private_key.decode().strip()
    )
    tags = {t["Key"]: t["Value"] for t in aws.client("ec2").describe_tags(
        Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]}  # fmt: skip
    keyscan = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", host_record(instance_id)["address"]], capture_output=True, text=True
    ).stdout.split()
    assert tags["SshHostKeyEd25519"] == " ".join(keyscan[1:3])
    assert "Write token: ssm:/ranker-team/api/write-token" in first.text

    # The operator's address changes: one run from the new address converges. The host firewall leaves
    # SSH's sources to the security group (a host rule for the old range would refuse this very run).
    moved = run_a("site.yml", ssh_admin_cidr=NEW_ADMIN_CIDR)
    assert moved.returncode == 0, moved.output[-5000:]
    assert instance_changes(moved) == {instance_id: 0}, changed_tasks(moved)
    group = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "group-name", "Values": [f"{PROJECT}-api"]}]
    )["SecurityGroups"][0]
    ssh_sources = [r["CidrIp"] for p in group["IpPermissions"] if p.get("FromPort") == 22 for r in p["IpRanges"]]
    assert ssh_sources == [NEW_ADMIN_CIDR]

    # A second clone converges without touching the instance; A's clients keep their token.
    second = run_b("site.yml")
    assert second.returncode == 0, second.output[-5000:]
    assert instance_changes(second) == {instance_id: 0}, changed_tasks(second)
    assert (clone / ".secrets" / f"{PROJECT}.api-write-token").read_text().strip() == token
    assert (clone / ".secrets" / "ssh" / PROJECT).read_bytes() == private_key
    assert oct((clone / ".secrets" / "ssh" / PROJECT).stat().st_mode & 0o777) == "0o600"
    api = f"http://{host_record(instance_id)['address']}:11373"
    assert shop_created(api, token) == 201
    # Nothing of the smoke tests' is left in the table.
    with urllib.request.urlopen(f"{api}/shops", timeout=10) as response:
        assert [s["name"] for s in json.load(response)["items"] if s["name"].startswith("Smoke test")] == []

    # A lost .secrets/ is fetched again from the account, on a day-2 run alone, limited to the instance.
    shutil.rmtree(a_secrets)
    recovered = run_a("playbooks/configure.yml", "--limit", instance_id)
    assert recovered.returncode == 0, recovered.output[-5000:]
    assert instance_changes(recovered) == {instance_id: 0}, changed_tasks(recovered)
    assert (a_secrets / "ssh" / PROJECT).read_bytes() == private_key
    assert (a_secrets / f"{PROJECT}.api-write-token").read_text().strip() == token

    # --limit on deploy and verify from a controller with nothing local.
    for playbook in ("playbooks/deploy.yml", "playbooks/verify.yml"):
        limited = run_c(playbook, "--limit", instance_id)
        assert limited.returncode == 0, (playbook, limited.output[-5000:])
        assert instance_changes(limited) == {instance_id: 0}, (playbook, changed_tasks(limited))

    # reprovision.yml chooses its instance with -e: a limit, which would skip its controller plays and
    # replace nothing, is refused with the command to run instead.
    limited = run_c("playbooks/reprovision.yml", "--limit", instance_id)
    assert limited.returncode != 0
    assert f"-e reprovision_instance={instance_id}" in limited.text, limited.output[-3000:]

    # configure.yml alone never widens SSH: an empty ssh_admin_cidr is refused before any change.
    empty = run_a("playbooks/configure.yml", ssh_admin_cidr="")
    assert empty.returncode != 0
    assert "ssh_admin_cidr ''" in empty.text, empty.output[-3000:]
    assert instance_changes(empty) == {instance_id: 0}, changed_tasks(empty)

    # Another machine answers at the instance's address with another host key: every controller refuses
    # it, the one that saw the host (A) and one that never did (a fresh secrets folder), and runs nothing.
    key = a_secrets / "ssh" / PROJECT
    on_host(instance_id, key, "sudo cp -a /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub /root/")
    on_host(
        instance_id,
        key,
        "sudo rm /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub"
        " && sudo ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && sudo systemctl restart ssh",
    )
    try:
        shutil.rmtree(controllers["c_secrets"], ignore_errors=True)
        for run in (run_a, run_c):
            refused = run("playbooks/configure.yml")
            assert refused.returncode != 0
            assert f"REFUSED: instance {instance_id}" in refused.text, refused.output[-5000:]
            assert len(re.findall(r"SHA256:[A-Za-z0-9+/]{43}", refused.text.split("REFUSED")[1])) >= 2
            assert "Gathering Facts" not in refused.output.split("REFUSED")[1]
    finally:
        on_host(
            instance_id,
            key,
            "sudo cp -a /root/ssh_host_ed25519_key /root/ssh_host_ed25519_key.pub /etc/ssh/"
            " && sudo systemctl restart ssh",
        )
    back = run_a("playbooks/configure.yml")
    assert back.returncode == 0, back.output[-5000:]
