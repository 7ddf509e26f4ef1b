"""What roles/api_service (AppArmor profile, unit) and roles/host_audit (audit rules) write, rendered for
each release, also those the sandbox cannot boot: Ubuntu 18.04 has AppArmor 2.12 (no `abi` rule; the
abstractions below exist there), systemd 237 (AppArmorProfile= exists since 210) and auditd 2.8.2 (the
system call names below are in its x86_64 and i386 tables; CIS and the DISA STIG for 18.04 use them)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
from playbook_on_localhost import run_on_localhost

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).with_name("render_audit_apparmor.yml")

# (distribution, version) -> (interpreter, major.minor)
RELEASES = {
    ("Ubuntu", "18.04"): ("/usr/bin/python3.8", "3.8"),
    ("Ubuntu", "22.04"): ("/usr/bin/python3.10", "3.10"),
    ("Debian", "12"): ("/usr/bin/python3.11", "3.11"),
}
# Includes shipped by AppArmor 2.12 (Ubuntu 18.04) and every later release.
APPARMOR_2_12_INCLUDES = {
    "tunables/global",
    "abstractions/base",
    "abstractions/nameservice",
    "abstractions/ssl_certs",
    "abstractions/python",
}
AUDIT_2_8_SYSCALLS = {"adjtimex", "settimeofday", "clock_settime", "init_module", "finit_module", "delete_module"}


def render(tmp_path: Path, distribution: str, version: str, interpreter: str, python: str, mode: str) -> Path:
    extra = {
        "ansible_distribution": distribution,
        "ansible_distribution_version": version,
        "render_dir": str(tmp_path),
        "render_interpreter": interpreter,
        "render_python_version": python,
        "render_apparmor_mode": mode,
    }
    result = run_on_localhost(PLAYBOOK, extra)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path


@pytest.mark.parametrize(("release", "runtime"), list(RELEASES.items()), ids=[f"{d}-{v}" for d, v in RELEASES])
def test_profile_and_unit_suit_the_release(tmp_path, release, runtime):
    out = render(tmp_path, *release, *runtime, "enforce")
    profile = (out / "profile").read_text()
    lines = [line.strip() for line in profile.splitlines()]
    includes = set(re.findall(r"^\s*#include <([^>]+)>$", profile, re.MULTILINE))
    print(f"{release}: profile of {len(lines)} lines, includes {sorted(includes)}")
    assert not [line for line in lines if line.startswith("abi ")]  # AppArmor 3 syntax, unknown to 2.12
    assert includes == APPARMOR_2_12_INCLUDES
    header = next(line for line in lines if line.startswith("profile "))
    assert header.startswith("profile coffee-ranker-api flags=(attach_disconnected)")
    # The interpreter the venv links to is mapped and executable under the profile.
    globs = [line.split()[0] for line in lines if line.endswith(" mrix,")]
    assert any(fnmatch.fnmatch(runtime[0], glob) for glob in globs), globs
    assert "/opt/coffee-ranker/venv/** mr," in lines
    assert "/var/lib/coffee-ranker/** rwk," in lines
    # Writes nowhere else but its private /tmp.
    writable = [line for line in lines if re.search(r"\s\w*w\w*,$", line) and not line.startswith(("#", "signal"))]
    assert all(re.match(r"(owner )?(/var/lib/coffee-ranker|/tmp|/var/tmp)/", line) for line in writable), writable

    assert "AppArmorProfile=coffee-ranker-api" in (out / "unit-apparmor").read_text().splitlines()
    assert "AppArmorProfile" not in (out / "unit-container").read_text()


def test_complain_mode_is_a_profile_flag(tmp_path):
    out = render(tmp_path, "Ubuntu", "18.04", "/usr/bin/python3.8", "3.8", "complain")
    assert "profile coffee-ranker-api flags=(attach_disconnected,complain) {" in (out / "profile").read_text()


def test_audit_rules_use_only_what_auditd_2_8_knows(tmp_path):
    out = render(tmp_path, "Ubuntu", "18.04", "/usr/bin/python3.8", "3.8", "enforce")
    rules = [line for line in (out / "audit.rules").read_text().splitlines() if line.startswith("-")]
    print(f"{len(rules)} audit rules")
    watches = [line.split() for line in rules if line.startswith("-w ")]
    for watch in watches:
        assert len(watch) == 6, watch
        assert watch[2:5] == ["-p", "wa", "-k"], watch
        assert watch[1].startswith("/"), watch
    watched = {watch[1]: watch[5] for watch in watches}
    for path in ("/etc/systemd/system/coffee-ranker-api.service", "/etc/coffee-ranker", "/opt/coffee-ranker"):
        assert watched[path] == "coffee-ranker-service"
    for path in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d"):
        assert path in watched
    syscalls = set()
    for line in rules:
        if line.startswith("-a "):
            assert re.fullmatch(r"-a always,exit -F arch=b(64|32)( -S \w+)+ -k [\w-]+", line), line
            syscalls |= set(re.findall(r"-S (\w+)", line))
    assert syscalls <= AUDIT_2_8_SYSCALLS
