"""A bad sshd setting never leaves a host without SSH: roles/base_system reloads sshd under a dead man's
switch, logs in anew, and when that fails lets the switch put the previous sshd_config back.

Boots one sandbox host (sandbox/hosts, needs root) and applies the role to it three times: with the
audited settings, with a setting that passes `sshd -t` but locks the controller out, and again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sandbox"))
from sandbox_cli import SandboxTool, ssh  # noqa: E402

STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox").resolve()
HOSTS = SandboxTool(REPO / "sandbox" / "hosts", STATE_DIR / "hosts", timeout=600)
HOST_NAME = "ssh-lockout-test"
SUITE = os.environ.get("SANDBOX_SUITE") or "bookworm"
PLAYBOOK = Path(__file__).with_name("sshd_lockout.yml")
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
ROLLBACK_SECONDS = 15
SETTINGS = {
    "PasswordAuthentication": "no",
    "PermitRootLogin": "no",
    "PermitEmptyPasswords": "no",
    "PubkeyAuthentication": "yes",
    "X11Forwarding": "no",
}

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts need root (mounts, namespaces, iptables)"),
    pytest.mark.skipif(shutil.which("systemd-nspawn") is None, reason="systemd-nspawn is missing"),
]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sshd-lockout")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    machine = HOSTS.start(HOST_NAME, key.with_suffix(".pub"), "--suite", SUITE, "--wait-login", str(key))
    inventory = folder / "inventory.yml"
    host_vars = {
        "ansible_host": machine["address"],
        "ansible_user": machine["user"],
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "apt_cache_valid_time": 86400,
        "package_manager_wait": "true",
        "ssh_port": 22,
        "base_system_sshd_rollback_seconds": ROLLBACK_SECONDS,
    }
    inventory.write_text(json.dumps({"all": {"hosts": {HOST_NAME: host_vars}}}))
    try:
        yield {"machine": machine, "key": key, "inventory": inventory}
    finally:
        HOSTS("stop", HOST_NAME, check=False)


def apply(host, **extra) -> subprocess.CompletedProcess:
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    started = time.monotonic()
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(host["inventory"]), str(PLAYBOOK), "-e", json.dumps(extra)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"run with {extra or 'the defaults'}: exit {result.returncode} after {time.monotonic() - started:.1f} s")
    return result


def login(host, command: str) -> subprocess.CompletedProcess:
    """A new SSH process, as a new operator would log in: a fresh key exchange and authentication."""
    return ssh(host["machine"], host["key"], command, timeout=60)


# Settings that pass `sshd -t` and still lock the controller out, with the line the failure must name.
LOCKOUTS = {
    "nobody-may-log-in": ({"base_system_sshd_settings": {**SETTINGS, "AllowUsers": "nobody"}}, "AllowUsers nobody"),
    # Compiled into OpenSSH, off by default in every client since 7.0: the key exchange finds no match.
    "key-exchange-the-client-lacks": (
        {
            "base_system_sshd_algorithms": {
                "KexAlgorithms": ["diffie-hellman-group1-sha1"],
                "Ciphers": ["aes128-ctr"],
                "MACs": ["hmac-sha2-256-etm@openssh.com"],
                "HostKeyAlgorithms": ["ssh-ed25519"],
            }
        },
        "KexAlgorithms diffie-hellman-group1-sha1",
    ),
}


@pytest.fixture(scope="module")
def audited(host):
    """The host as the role leaves it with its defaults, and the head of its sshd_config then."""
    first = apply(host)
    assert first.returncode == 0, first.stdout + first.stderr
    head = login(host, "sudo -n head -n 20 /etc/ssh/sshd_config")
    assert head.returncode == 0, head.stderr
    assert "HostKeyAlgorithms ssh-ed25519" in head.stdout
    return head.stdout


@pytest.mark.parametrize("lockout", list(LOCKOUTS))
def test_a_setting_that_locks_the_controller_out_is_rolled_back(host, audited, lockout):
    settings, named_line = LOCKOUTS[lockout]
    locked = apply(host, **settings)
    print(locked.stdout[-1500:])
    # First what matters: reachable again by a new login with sudo, with the previous file, the switch gone.
    after = login(
        host,
        "sudo -n head -n 20 /etc/ssh/sshd_config && sudo -n sshd -T | grep -i '^allowusers' || true;"
        " systemctl is-active coffee-ranker-sshd-rollback.timer || true;"
        " test -e /etc/ssh/sshd_config.coffee-ranker-previous && echo previous-left || true",
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith(audited), after.stdout
    # The role's own AllowUsers (the login user) is back in force, the locking one gone.
    assert f"allowusers {host['machine']['user']}\n" in after.stdout.lower()
    assert "allowusers nobody" not in after.stdout.lower()
    assert "previous-left" not in after.stdout
    assert "\nactive" not in after.stdout

    # Then that the run failed and said why (the YAML callback wraps and quotes long messages).
    assert locked.returncode != 0
    said = " ".join(locked.stdout.split()).replace("''", "'")
    assert "sshd with the new settings refused a new login or sudo" in said
    assert "The dead man's switch put the previous sshd_config back and reloaded sshd" in said
    assert named_line in said

    # The host is back where the audited run left it: nothing to change.
    again = apply(host)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in again.stdout, again.stdout
