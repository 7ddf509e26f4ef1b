"""The configured host as outside auditors measure it (lynis, systemd-analyze), and still reachable by its operator."""

import os
import re
import subprocess
from collections import Counter

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("api_servers")

UNIT = "coffee-ranker-api.service"
SYSCTL_FILE = "/etc/sysctl.d/60-coffee-ranker-hardening.conf"

# The target for lynis's hardening index (0-100).
LYNIS_MINIMUM_INDEX = 80
# systemd-analyze's exposure of the API unit when the hardening work began (2026-12-05, bookworm): it
# may only go down.
UNIT_EXPOSURE_TODAY = 1.1


@pytest.fixture(scope="module")
def lynis(host):
    """lynis (Debian's package) run once on the host: its report's key/value lines and its log."""
    with host.sudo():
        host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet --quiet lynis")
        host.check_output("lynis audit system --quick --no-colors > /dev/null 2>&1")
        report = host.file("/var/log/lynis-report.dat").content_string
        log = host.file("/var/log/lynis.log").content_string
    values: dict[str, list[str]] = {}
    for line in report.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values.setdefault(key.removesuffix("[]"), []).append(value)
    return values, log


def points_lost_by_test(log: str) -> Counter:
    """Hardening points each lynis test withheld, from its log ("partial number of hardening points (1 of 3)")."""
    lost: Counter = Counter()
    test = None
    for line in log.splitlines():
        if match := re.search(r"Performing test ID (\S+)", line):
            test = match.group(1)
        elif match := re.search(r"partial number of hardening points \((\d+) of (\d+)\)", line):
            lost[test] += int(match.group(2)) - int(match.group(1))
    return lost


def test_lynis_hardening_index_reaches_the_target(lynis):
    values, log = lynis
    index = int(values["hardening_index"][0])
    print(f"\nlynis {values['lynis_version'][0]} hardening index: {index} (target >= {LYNIS_MINIMUM_INDEX})")
    for warning in values.get("warning", []):
        print(f"  warning: {warning}")
    print("  points withheld, by test: " + ", ".join(f"{t} {n}" for t, n in points_lost_by_test(log).most_common()))
    assert index >= LYNIS_MINIMUM_INDEX


def test_api_unit_exposure_is_at_most_todays(host):
    report = host.check_output(f"systemd-analyze security --no-pager {UNIT}")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)
    assert match, report
    exposure = float(match.group(1))
    print(f"\nsystemd-analyze security {UNIT}: {exposure} (at most {UNIT_EXPOSURE_TODAY})")
    assert exposure <= UNIT_EXPOSURE_TODAY


def test_kernel_settings_are_in_the_file_and_in_effect_where_the_host_may_set_them(host):
    settings = {}
    for line in host.file(SYSCTL_FILE).content_string.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.tcp_syncookies", "kernel.kptr_restrict", "fs.suid_dumpable"):
        assert key in settings
    in_effect, left_to_boot = [], []
    with host.sudo():
        for key, value in settings.items():
            entry = "/proc/sys/" + key.replace(".", "/")
            if host.run(f"test -w {entry}").rc == 0:
                assert host.file(entry).content_string.split() == value.split(), key
                in_effect.append(key)
            else:
                left_to_boot.append(key)
    # A container shares its machine's kernel, whose /proc/sys it may not write: those keys wait for a boot.
    print(f"\n{len(in_effect)} kernel settings in effect, {len(left_to_boot)} read-only here (applied at boot)")
    # The host's network namespace is its own (nspawn leaves /proc/sys/net writable): its IP keys are
    # applied (net.core.bpf_jit_harden is the kernel's, not the namespace's).
    assert [key for key in left_to_boot if key.startswith(("net.ipv4.", "net.ipv6."))] == []
    assert "net.ipv4.conf.all.rp_filter" in in_effect


def test_the_firewall_applies_these_kernel_settings_when_it_starts(host):
    # ufw applies its own sysctl file at each start (boot, reload); Debian's sets log_martians=0.
    key = "/proc/sys/net/ipv4/conf/all/log_martians"
    with host.sudo():
        host.check_output("systemctl restart ufw")
        assert host.file(key).content_string.strip() == "1"


def test_login_shells_and_new_accounts_get_strict_defaults(host):
    login_defs = host.file("/etc/login.defs").content_string
    assert re.search(r"^UMASK\s+027$", login_defs, re.MULTILINE)
    assert re.search(r"^PASS_MIN_DAYS\s+1$", login_defs, re.MULTILINE)
    assert re.search(r"^SHA_CRYPT_MIN_ROUNDS\s+\d{4,}$", login_defs, re.MULTILINE)
    # A login shell: umask, no core dumps, a read-only idle timeout.
    assert host.check_output("bash -lc 'umask; ulimit -Hc; echo $TMOUT'").split() == ["0027", "0", "900"]
    assert "hard    core    0" in host.file("/etc/security/limits.d/60-coffee-ranker-hardening.conf").content_string


def test_ubuntu_account_keeps_no_password_expiry(host):
    with host.sudo():
        ageing = host.check_output("chage --list ubuntu")
    assert re.search(r"Password expires\s*:\s*never", ageing), ageing
    assert re.search(r"Account expires\s*:\s*never", ageing), ageing


def test_only_root_reads_cron_and_sshd_configuration(host):
    assert host.file("/etc/crontab").mode == 0o600
    for folder in ("cron.d", "cron.hourly", "cron.daily", "cron.weekly", "cron.monthly"):
        assert host.file(f"/etc/{folder}").mode == 0o700, folder
    assert host.file("/etc/ssh/sshd_config").mode == 0o600
    assert host.check_output("find /home -mindepth 1 -maxdepth 1 -type d -perm /027") == ""


def test_unused_filesystems_protocols_and_storage_are_refused(host):
    modprobe = host.file("/etc/modprobe.d/coffee-ranker-hardening.conf").content_string
    for module in ("cramfs", "udf", "dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"):
        assert f"install {module} /bin/false" in modprobe
    # Ubuntu's snaps are squashfs images.
    assert "squashfs" not in modprobe
    assert "noexec" in host.check_output("findmnt --noheadings --output OPTIONS /dev/shm").split(",")


def test_ubuntu_logs_in_anew_with_its_key_and_uses_sudo(host):
    """A new SSH connection (no multiplexing over the test's own), as the operator's next login would be."""
    variables = RUNNER.get_variables(host.backend.get_hostname())
    command = [
        "ssh",
        "-o",
        "ControlPath=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-i",
        variables["ansible_private_key_file"],
        f"{variables['ansible_user']}@{variables['ansible_host']}",
        "sudo -n true && id -un",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ubuntu"
