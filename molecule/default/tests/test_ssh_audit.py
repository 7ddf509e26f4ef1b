"""sshd as an outside auditor and a new operator meet it: ssh-audit (Debian's package, run on the host against
its own sshd) finds nothing to fail or warn about, and the controller's user still logs in and uses sudo."""

import os
import re
import subprocess

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts(
    "api_servers"
)

USER = "ubuntu"
# What ssh-audit flags only because the auditor is older than OpenSSH (bookworm's 2.5.0, bullseye's 2.2.0),
# each by algorithm and the auditor's exact note. Nothing else may fail or warn.
AUDITOR_TOO_OLD = {
    # The Terrapin countermeasure (CVE-2023-48795) that patched OpenSSH advertises: no key exchange at all.
    ("kex-strict-s-v00@openssh.com", "unknown algorithm"),
    # The post-quantum hybrid, OpenSSH's default since 9.0; its name without @openssh.com came later still.
    ("sntrup761x25519-sha512", "unknown algorithm"),
    ("sntrup761x25519-sha512@openssh.com", "using experimental algorithm"),
}
NOTE = re.compile(r"^\((?P<kind>\w+)\) (?P<name>\S+)\s+-- \[(?P<level>\w+)\] (?P<note>.*)$")
MORE_NOTES = re.compile(r"^\s+`- \[(?P<level>\w+)\] (?P<note>.*)$")


def audit_findings(report: str) -> list[tuple[str, str, str, str]]:
    """(kind, algorithm, level, note) of every fail and warn in ssh-audit's plain-text report (its JSON has
    no notes before 3.0); a (cve) line counts as a failure."""
    findings, current = [], None
    for line in report.splitlines():
        if match := NOTE.match(line):
            current = (match["kind"], match["name"])
            level, note = match["level"], match["note"]
        elif (match := MORE_NOTES.match(line)) and current:
            level, note = match["level"], match["note"]
        elif line.startswith("(cve) "):
            findings.append(("cve", line.split()[1], "fail", line))
            continue
        else:
            continue
        if level in ("fail", "warn"):
            findings.append((*current, level, note.strip()))
    return findings


def test_audit_findings_are_parsed():
    report = (
        "(kex) ecdh-sha2-nistp256  -- [fail] using weak elliptic curves\n"
        "                          `- [info] available since OpenSSH 5.7\n"
        "(mac) umac-64@openssh.com -- [warn] using encrypt-and-MAC mode\n"
        "                          `- [warn] using small 64-bit tag size\n"
        "(enc) aes128-ctr          -- [info] available since OpenSSH 3.7\n"
    )
    assert audit_findings(report) == [
        ("kex", "ecdh-sha2-nistp256", "fail", "using weak elliptic curves"),
        ("mac", "umac-64@openssh.com", "warn", "using encrypt-and-MAC mode"),
        ("mac", "umac-64@openssh.com", "warn", "using small 64-bit tag size"),
    ]


def test_ssh_audit_finds_no_failures_and_no_warnings(host):
    with host.sudo():
        install = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q ssh-audit")
        assert install.rc == 0, install.stderr
        version = host.check_output("dpkg-query --show --showformat='${Version}' ssh-audit")
    report = host.run("ssh-audit --no-colors --port=22 127.0.0.1")
    assert "# key exchange algorithms" in report.stdout, report.stdout + report.stderr
    findings = audit_findings(report.stdout)
    accepted = [f for f in findings if (f[1], f[3]) in AUDITOR_TOO_OLD]
    failures = [f for f in findings if f[2] == "fail" and f not in accepted]
    warnings = [f for f in findings if f[2] == "warn" and f not in accepted]
    figures = (
        f"ssh-audit {version} against {host.backend.get_hostname()}: {len(failures)} failures, {len(warnings)} warnings"
        f" ({len(accepted)} notes of an auditor older than the algorithm: {sorted({f[1] for f in accepted})})"
    )
    print(figures)
    assert (failures, warnings) == ([], []), f"{figures}\n{report.stdout}"


@pytest.fixture
def fresh_login(host, tmp_path):
    """A command line for a NEW ssh process from the controller, as an operator would start it: no shared
    connection, no user ssh_config, no password, the scenario's key only, and the host's ed25519 key pinned."""
    variables = host.ansible.get_variables()
    address = variables["ansible_host"]
    port = str(variables.get("ansible_port", 22))
    key = variables.get("ansible_ssh_private_key_file") or variables["ansible_private_key_file"]
    host_key = host.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[:2]
    known_hosts = tmp_path / "known_hosts"
    pinned_name = address if port == "22" else f"[{address}]:{port}"
    known_hosts.write_text(f"{pinned_name} {' '.join(host_key)}\n")
    options = {
        "BatchMode": "yes",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "IdentitiesOnly": "yes",
        "PasswordAuthentication": "no",
        "ControlMaster": "no",
        "ControlPath": "none",
        "ConnectTimeout": "20",
    }
    arguments = [f"-o{name}={value}" for name, value in options.items()]
    return ["ssh", "-F", "/dev/null", *arguments, "-i", key, "-p", port, f"{USER}@{address}"]


def test_a_new_login_with_the_scenario_key_can_use_sudo(fresh_login):
    result = subprocess.run(
        [*fresh_login, "sudo -n true && id -un"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == USER


def test_sshd_keeps_pam_and_the_ubuntu_account_stays_usable(host):
    with host.sudo():
        effective = host.check_output("/usr/sbin/sshd -T").splitlines()
        settings = dict(line.split(" ", 1) for line in effective if " " in line)
        status = host.check_output(f"passwd -S {USER}").split()
        expires = host.check_output(f"getent shadow {USER}").split(":")[7]
    # Cloud images create the user without a password: passwd -S says L(ocked password). sshd lets such a
    # user in by key only through PAM; with UsePAM no it refuses the account (dev-sec's lockouts).
    assert settings["usepam"] == "yes"
    assert status[1] in ("L", "NP", "P"), status
    assert expires == "", f"the account expires on day {expires}"
    assert host.user(USER).shell in ("/bin/bash", "/bin/sh")
    assert settings["pubkeyauthentication"] == "yes"
    assert settings["passwordauthentication"] == "no"
    print(f"{USER}: password status {status[1]}, account expiry none, sshd usepam {settings['usepam']}")


def test_authorized_keys_are_private_to_the_user(host):
    folder = host.file(f"/home/{USER}/.ssh")
    keys = host.file(f"/home/{USER}/.ssh/authorized_keys")
    assert (folder.user, folder.mode) == (USER, 0o700)
    assert keys.user == USER
    assert keys.mode & 0o022 == 0, oct(keys.mode)  # sshd's StrictModes refuses group- or world-writable keys
