"""roles/base_system limits sshd to algorithms ssh-audit passes, chosen from what each release's OpenSSH
knows: the role's own vars render the block for each release's recorded `ssh -Q` lists, also for the
releases the sandbox cannot boot (Ubuntu 18.04's OpenSSH 7.6)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from playbook_on_localhost import run_on_localhost

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).with_name("sshd_render_head.yml")

MACS = (
    "hmac-sha1 hmac-sha1-96 hmac-sha2-256 hmac-sha2-512 hmac-md5 hmac-md5-96 umac-64@openssh.com "
    "umac-128@openssh.com hmac-sha1-etm@openssh.com hmac-sha1-96-etm@openssh.com hmac-sha2-256-etm@openssh.com "
    "hmac-sha2-512-etm@openssh.com hmac-md5-etm@openssh.com hmac-md5-96-etm@openssh.com umac-64-etm@openssh.com "
    "umac-128-etm@openssh.com"
)
CIPHERS = (
    "3des-cbc aes128-cbc aes192-cbc aes256-cbc aes128-ctr aes192-ctr aes256-ctr aes128-gcm@openssh.com "
    "aes256-gcm@openssh.com chacha20-poly1305@openssh.com"
)
KEX_7_4 = (
    "diffie-hellman-group1-sha1 diffie-hellman-group14-sha1 diffie-hellman-group14-sha256 "
    "diffie-hellman-group16-sha512 diffie-hellman-group18-sha512 diffie-hellman-group-exchange-sha1 "
    "diffie-hellman-group-exchange-sha256 ecdh-sha2-nistp256 ecdh-sha2-nistp384 ecdh-sha2-nistp521 "
    "curve25519-sha256 curve25519-sha256@libssh.org"
)
KEYS_CLASSIC = (
    "ssh-ed25519 ssh-ed25519-cert-v01@openssh.com ssh-rsa ssh-dss ecdsa-sha2-nistp256 ecdsa-sha2-nistp384 "
    "ecdsa-sha2-nistp521 ssh-rsa-cert-v01@openssh.com ssh-dss-cert-v01@openssh.com "
    "ecdsa-sha2-nistp256-cert-v01@openssh.com ecdsa-sha2-nistp384-cert-v01@openssh.com "
    "ecdsa-sha2-nistp521-cert-v01@openssh.com"
)
KEYS_SK = "sk-ssh-ed25519@openssh.com sk-ecdsa-sha2-nistp256@openssh.com"

# `ssh -Q kex|cipher|mac|key` of each release. bullseye and bookworm: recorded on sandbox hosts
# (2026-12-05). bionic (7.6p1) and trixie (10.0p1): read from OpenSSH's sources (kex.c's kexalgs table,
# cipher.c, mac.c, sshkey.c) and release notes: curve25519-sha256 since 7.4, group16/18-sha512 since
# 7.3, sntrup4591761 in 8.0-8.4, sntrup761 since 8.5 (the name without @openssh.com since 9.9),
# mlkem768x25519-sha256 since 9.9, DSA gone in 10.0.
RELEASES = {
    "bionic-7.6": {
        "kex": KEX_7_4,
        "cipher": CIPHERS + " rijndael-cbc@lysator.liu.se",
        "mac": MACS,
        "key": KEYS_CLASSIC,
    },
    "bullseye-8.4": {
        "kex": KEX_7_4 + " sntrup4591761x25519-sha512@tinyssh.org",
        "cipher": CIPHERS + " rijndael-cbc@lysator.liu.se",
        "mac": MACS,
        "key": KEYS_CLASSIC + " " + KEYS_SK,
    },
    "bookworm-9.2": {
        "kex": KEX_7_4 + " sntrup761x25519-sha512 sntrup761x25519-sha512@openssh.com",
        "cipher": CIPHERS,
        "mac": MACS,
        "key": KEYS_CLASSIC + " " + KEYS_SK,
    },
    "trixie-10.0": {
        "kex": KEX_7_4 + " sntrup761x25519-sha512 sntrup761x25519-sha512@openssh.com mlkem768x25519-sha256",
        "cipher": CIPHERS,
        "mac": MACS,
        "key": KEYS_CLASSIC.replace(" ssh-dss-cert-v01@openssh.com", "").replace(" ssh-dss", "") + " " + KEYS_SK,
    },
}

CLASSIC_KEX = ",".join(
    [
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group16-sha512",
    ]
)
COMMON = [
    "Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,"
    "aes256-ctr,aes192-ctr,aes128-ctr",
    "HostKeyAlgorithms ssh-ed25519",
]
MAC_LINE = "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com"
EXPECTED_KEX = {
    "bionic-7.6": CLASSIC_KEX,
    "bullseye-8.4": CLASSIC_KEX,
    "bookworm-9.2": "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com," + CLASSIC_KEX,
    "trixie-10.0": "mlkem768x25519-sha256,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com," + CLASSIC_KEX,
}
MARKER = "# {} coffee-ranker base_system: these settings win over any later line"
AUTHENTICATION = [
    "AllowAgentForwarding no",
    "AllowTcpForwarding no",
    "AllowUsers ubuntu",
    "ClientAliveCountMax 2",
    "ClientAliveInterval 300",
    "Compression no",
    "LogLevel VERBOSE",
    "MaxAuthTries 3",
    "MaxSessions 2",
    "PasswordAuthentication no",
    "PermitEmptyPasswords no",
    "PermitRootLogin no",
    "PubkeyAuthentication yes",
    "TCPKeepAlive no",
    "X11Forwarding no",
]
# What ssh-audit fails or warns about, by name: none of it may appear in any rendered line.
REFUSED = ("nistp", "ecdsa", "sha1", "umac-64", "ssh-rsa", "ssh-dss", "cbc", "group14", "group-exchange", "tinyssh")


def render(tmp_path: Path, supported: dict[str, str]) -> subprocess.CompletedProcess:
    output = tmp_path / "head.json"
    extra = {
        "ssh_supported": {query: names.split() for query, names in supported.items()},
        "render_output": str(output),
    }
    return run_on_localhost(PLAYBOOK, extra)


@pytest.mark.parametrize("release", list(RELEASES))
def test_each_release_gets_audited_algorithms_its_openssh_knows(tmp_path, release):
    result = render(tmp_path, RELEASES[release])
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = json.loads((tmp_path / "head.json").read_text())
    expected = [
        MARKER.format("BEGIN"),
        "Port 2222",  # ssh_port, as the render playbook sets it
        *AUTHENTICATION,
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        *COMMON,
        f"KexAlgorithms {EXPECTED_KEX[release]}",
        MAC_LINE,
        MARKER.format("END"),
    ]
    print(f"{release}:", *rendered["head"], sep="\n  ")
    assert rendered["head"] == expected
    assert rendered["unsupported"] == []
    # The role reads exactly this many lines of the host's file before it knows the host's algorithms.
    assert rendered["head_length"] == len(expected)
    for line in rendered["head"][1:-1]:
        keyword, _, value = line.partition(" ")
        names = value.split(",")
        if keyword in ("KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms"):
            known = {"KexAlgorithms": "kex", "Ciphers": "cipher", "MACs": "mac", "HostKeyAlgorithms": "key"}[keyword]
            assert set(names) <= set(RELEASES[release][known].split()), line
            assert not [name for name in names for bad in REFUSED if bad in name], line


def test_an_openssh_that_knows_none_of_a_list_is_reported(tmp_path):
    result = render(tmp_path, {**RELEASES["bionic-7.6"], "mac": "hmac-sha1 hmac-md5"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "head.json").read_text())["unsupported"] == ["MACs"]
