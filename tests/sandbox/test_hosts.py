"""sandbox/hosts boots local hosts that behave like fresh EC2 instances of an Ubuntu cloud image.

These tests boot real hosts (systemd-nspawn, overlayfs, network namespaces, iptables), so they need root.
They share the machine's sandbox (and its cached root filesystems) with whoever else runs hosts: their
own hosts are all named pytest-*, only those are stopped, and the checks of what all hosts share (NAT,
ip_forward) and the full `cleanup` run only when no other host runs, as in CI. The first run builds the
root filesystem (about a minute); later runs reuse the cache.

SANDBOX_SUITES=bookworm,bullseye,trixie boots one host of each listed suite (default: bookworm).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NEEDS_SANDBOX_HOSTS
from sandbox_cli import SandboxTool, ssh

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "sandbox"))
from machines.ssh import CLIENT_OPTIONS, ssh_answers, ssh_command  # noqa: E402

HOSTS = REPO_ROOT / "sandbox" / "hosts"
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO_ROOT / ".sandbox").resolve()
HOSTS_DIR = STATE_DIR / "hosts"
SUBNET = "10.213.0.0/16"
INSTANCE_ID = "i-0a1b2c3d4e5f60718"  # a host named like an EC2 instance: 19 characters
SUITES = [suite.strip() for suite in os.environ.get("SANDBOX_SUITES", "bookworm").split(",") if suite.strip()]
# What the playbooks give ansible.builtin.reboot: the boot id tells a VM's or instance's reboot, PID 1's start
# time a container's.
BOOT_TIME_COMMAND = "cat /proc/sys/kernel/random/boot_id; awk '{print $22}' /proc/1/stat"
ANSIBLE = Path(sys.executable).parent / "ansible"
# apt as a playbook's first task runs it, with no patience: a package that is installed already, so it only
# needs apt's locks.
APT_INSTALL_AT_ONCE = "sudo apt-get -o DPkg::Lock::Timeout=0 install -y sudo"

pytestmark = NEEDS_SANDBOX_HOSTS

hosts = SandboxTool(HOSTS, HOSTS_DIR, timeout=600)
start = hosts.start
record_of = hosts.record_of


def host_traces(name: str) -> list[str]:
    """Everything one host can leave on the machine: its processes, mounts, namespace, link, cgroups, state."""
    directory = HOSTS_DIR / name
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                root = os.readlink(entry / "root")
            except OSError:
                continue
            if f"{directory}/" in cmdline or root.startswith(f"{directory}/"):
                found.append(f"process {entry.name}: {cmdline}")
    found += [
        f"mount {line.split()[4]}"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(f"{directory}/")
    ]
    for link in Path("/sys/class/net").iterdir():
        alias = (link / "ifalias").read_text().strip() if (link / "ifalias").exists() else ""
        if alias == f"sandbox host {name}":
            found.append(f"link {link.name}")
    if Path(f"/run/netns/sandbox-host-{name}").exists():
        found.append(f"netns sandbox-host-{name}")
    found += [f"cgroup {cgroup}" for cgroup in Path("/sys/fs/cgroup").glob(f"**/sandbox-hosts/{name}")]
    if directory.exists():
        found.append(f"state {directory}")
    return found


def shared_traces() -> list[str]:
    """What all hosts share (NAT, forwarding, links, cgroups); must be gone once no host runs at all."""
    found = [f"link {link.name}" for link in Path("/sys/class/net").iterdir() if link.name.startswith("ve-sandbox-")]
    if Path("/run/netns").is_dir():
        found += [f"netns {ns.name}" for ns in Path("/run/netns").iterdir() if ns.name.startswith("sandbox-host-")]
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    found += [f"iptables rule {line}" for line in rules.splitlines() if SUBNET in line or "sandbox-hosts" in line]
    found += [f"cgroup {cgroup}" for cgroup in Path("/sys/fs/cgroup").glob("**/sandbox-hosts")]
    found += [
        f"mount {line.split()[4]}"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(str(HOSTS_DIR))
    ]
    if HOSTS_DIR.is_dir():
        found += [f"state {entry}" for entry in HOSTS_DIR.iterdir() if entry.name != ".lock"]
    return found


def other_hosts_run() -> bool:
    """Other sandbox hosts (a developer's, a molecule run's) share the machine; then the shared NAT stays."""
    netns = Path("/run/netns")
    names = [ns.name.removeprefix("sandbox-host-") for ns in netns.glob("sandbox-host-*")] if netns.is_dir() else []
    return any(not is_ours(name) for name in names)


def is_ours(name: str) -> bool:
    return name.startswith("pytest-") or name == INSTANCE_ID


def assert_no_trace(*names: str, ip_forward_before: str | None = None) -> None:
    for name in names:
        assert host_traces(name) == []
    if not other_hosts_run():
        assert shared_traces() == []
        if ip_forward_before is not None:
            assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == ip_forward_before


@pytest.fixture(scope="module")
def ip_forward_before():
    """ip_forward as it was before any host of ours ran (hosts of others may hold it on already)."""

    def stop_ours():
        ours = [entry.name for entry in HOSTS_DIR.iterdir() if is_ours(entry.name)] if HOSTS_DIR.is_dir() else []
        if ours:
            hosts("stop", *ours)
        hosts("cleanup", "--stale")

    stop_ours()
    yield Path("/proc/sys/net/ipv4/ip_forward").read_text()
    stop_ours()


@pytest.fixture(scope="module")
def key(tmp_path_factory, ip_forward_before) -> Path:
    private_key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pytest@sandbox", "-f", str(private_key)], check=True
    )
    return private_key


@pytest.fixture(scope="module")
def first_host(key) -> dict:
    return start("pytest-first", key.with_suffix(".pub"))


def test_start_prints_the_host_as_json(first_host):
    assert first_host == {
        "name": "pytest-first",
        "address": first_host["address"],
        "user": "ubuntu",
        "suite": "bookworm",
    }
    assert first_host["address"].startswith("10.213.")
    assert hosts("address", "pytest-first").stdout.strip() == first_host["address"]
    assert first_host in json.loads(hosts("list").stdout)


def test_ubuntu_logs_in_with_the_given_key_and_has_passwordless_sudo(first_host, key):
    result = ssh(first_host, key, "sudo -n true && whoami && cat ~/.ssh/authorized_keys")
    assert result.returncode == 0, result.stderr
    user, *authorized_keys = result.stdout.splitlines()
    assert user == "ubuntu"
    assert authorized_keys == [key.with_suffix(".pub").read_text().strip()]


def test_host_boots_like_a_cloud_instance(first_host, key):
    # is-system-running waits for the boot to finish; "degraded" is what many cloud images report too.
    state = ssh(first_host, key, "systemctl is-system-running --wait").stdout.strip()
    assert state in ("running", "degraded"), ssh(first_host, key, "systemctl --failed --no-legend").stdout
    result = ssh(first_host, key, "hostname && getent hosts $(hostname) && python3 --version && cloud-init status")
    assert result.returncode == 0, result.stderr
    hostname, resolved, python, cloud_init = result.stdout.splitlines()
    assert hostname == "pytest-first"
    assert resolved.split()[-1] == "pytest-first"
    assert python.startswith("Python 3.")
    assert cloud_init == "status: done"


def test_host_has_its_own_ssh_host_keys_and_machine_id(first_host, key):
    result = ssh(first_host, key, "cat /etc/machine-id; ls /etc/ssh/ssh_host_ed25519_key.pub")
    assert result.returncode == 0, result.stderr
    machine_id = result.stdout.split()[0]
    lower = Path(record_of("pytest-first")["lower"])
    assert (lower / "etc/machine-id").read_text() == ""
    assert len(machine_id) == 32
    assert list((lower / "etc/ssh").glob("ssh_host_*")) == []


def test_apt_inside_reaches_debian_archive_through_nat_and_dns(first_host, key):
    result = ssh(first_host, key, "sudo apt-get update")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bookworm InRelease" in result.stdout
    assert "Err:" not in result.stdout, result.stdout
    assert "W:" not in result.stderr, result.stderr


def test_second_host_gets_its_own_address_and_both_answer(first_host, key):
    second = start("pytest-second", key.with_suffix(".pub"))
    assert second["address"] != first_host["address"]
    for host in (first_host, second):
        result = ssh(host, key, "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == host["name"]
    assert {host["name"] for host in json.loads(hosts("list").stdout)} >= {"pytest-first", "pytest-second"}


def test_starting_a_running_host_changes_nothing(first_host, key):
    pid_before = record_of("pytest-first")["pid"]
    assert start("pytest-first", key.with_suffix(".pub")) == first_host
    assert record_of("pytest-first")["pid"] == pid_before


def test_a_host_named_like_an_instance_id_fits_the_interface_name_limit(key):
    host = start(INSTANCE_ID, key.with_suffix(".pub"))
    assert len(record_of(INSTANCE_ID)["veth"]) <= 15
    result = ssh(host, key, "hostname && sudo cloud-init query instance_id")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [INSTANCE_ID, INSTANCE_ID]
    hosts("stop", INSTANCE_ID)
    assert host_traces(INSTANCE_ID) == []


def test_instance_id_can_differ_from_the_name(key):
    host = start("pytest-with-id", key.with_suffix(".pub"), "--instance-id", "i-0123456789abcdef0")
    result = ssh(host, key, "sudo cloud-init query instance_id")
    assert result.stdout.strip() == "i-0123456789abcdef0", result.stderr
    hosts("stop", "pytest-with-id")


def host_key(host: dict) -> str:
    """The ed25519 host key sshd offers, as a client sees it."""
    result = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", "-T", "5", host["address"]], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), result.stderr
    return result.stdout.split(maxsplit=1)[1].strip()


def boot_time(host: dict, key: Path) -> list[str]:
    result = ssh(host, key, BOOT_TIME_COMMAND)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def reboot(host: dict, key: Path, timeout: float = 60) -> None:
    """`sudo systemctl reboot` over SSH, as an operator would; returns once `ubuntu` logs in to the next boot."""
    before = boot_time(host, key)
    started = time.monotonic()
    ssh(host, key, "sudo systemctl reboot")  # may lose the connection on its way down
    while time.monotonic() - started < timeout:
        if ssh_answers(host["address"]):
            result = ssh(host, key, BOOT_TIME_COMMAND, timeout=30)
            if result.returncode == 0 and result.stdout.split() != before:
                return
        time.sleep(0.2)
    raise AssertionError(f"{host['name']} did not come back within {timeout:.0f} s of its reboot")


def test_a_reboot_keeps_the_instance_disk_address_and_identity(first_host, key):
    supervisor = record_of("pytest-first")["pid"]
    identity = "sudo cat /var/lib/cloud/data/instance-id /etc/machine-id"
    written = ssh(first_host, key, f"echo 'written before the reboot' > ~/before-reboot && {identity}")
    assert written.returncode == 0, written.stderr
    key_before, time_before = host_key(first_host), boot_time(first_host, key)
    assert boot_time(first_host, key) == time_before  # steady while the host is up

    reboot(first_host, key)

    assert hosts("address", "pytest-first").stdout.strip() == first_host["address"]
    assert host_key(first_host) == key_before
    after = ssh(first_host, key, f"cat ~/before-reboot && {identity}")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == ["written before the reboot", *written.stdout.splitlines()]
    assert ssh(first_host, key, "cloud-init status --wait").stdout.split()[-2:] == ["status:", "done"]
    assert boot_time(first_host, key) != time_before
    # One host process through both boots, and one console log that kept the first boot's output.
    assert record_of("pytest-first")["pid"] == supervisor
    console = (HOSTS_DIR / "pytest-first" / "console.log").read_text(errors="replace")
    assert console.count("running 'init-local'") == 2, console[-2000:]


def test_an_ssh_killed_mid_session_leaves_the_callers_stdin_blocking(first_host, key):
    """What failed CI: an ssh of the tools killed on a timeout left the suite's stdin non-blocking, and the
    ansible of a later test refused to start."""
    read_end, write_end = os.pipe()
    try:
        command = ssh_command(first_host["user"], first_host["address"], 22, key, "echo in; sleep 30", 20)
        session = subprocess.Popen(command, stdin=read_end, stdout=subprocess.PIPE, text=True)
        try:
            assert session.stdout.readline() == "in\n"  # the session is open
        finally:
            session.kill()
            session.wait()
        assert os.get_blocking(read_end), "the killed ssh left its caller's stdin non-blocking"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_ansible_reboot_module_sees_the_host_come_back(first_host, key, tmp_path):
    time_before = boot_time(first_host, key)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    environment.update(
        ANSIBLE_SSH_ARGS=" ".join(f"-o {option}" for option in CLIENT_OPTIONS),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_PYTHON_INTERPRETER="auto_silent",
    )
    arguments = json.dumps({"boot_time_command": BOOT_TIME_COMMAND, "reboot_timeout": 120})
    result = subprocess.run(
        [str(ANSIBLE), "all", "-i", f"{first_host['address']},", "-u", "ubuntu", "--private-key", str(key)]
        + ["--become", "-m", "ansible.builtin.reboot", "-a", arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # away from the repository's ansible.cfg, which pins host keys
        env=environment,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"rebooted": true' in result.stdout, result.stdout
    assert boot_time(first_host, key) != time_before


def test_stop_removes_every_trace_and_spares_the_other_host(first_host, key, ip_forward_before):
    second = start("pytest-second", key.with_suffix(".pub"))  # already runs: this only reads it
    hosts("stop", "pytest-first")
    assert hosts("address", "pytest-first", check=False).returncode == 1
    assert host_traces("pytest-first") == []
    # Each host's systemd owns its cgroups alone: the poweroff of one stops none of the other's services.
    result = ssh(second, key, "systemctl is-system-running; systemctl is-active ssh cron systemd-networkd")
    state, *services = result.stdout.split()
    assert state in ("running", "degraded"), result.stdout + result.stderr
    assert services == ["active"] * 3, result.stdout
    hosts("stop", "pytest-second")
    assert_no_trace("pytest-first", "pytest-second", ip_forward_before=ip_forward_before)
    assert not any(host["name"].startswith("pytest-") for host in json.loads(hosts("list").stdout))
    hosts("stop", "pytest-never-started")  # safe when nothing runs


def kill_nspawn(name: str) -> None:
    """What a killed session leaves: the host's process (the supervisor of its systemd-nspawn) gone at once,
    its nspawn, container and everything else left."""
    os.kill(record_of(name)["pid"], signal.SIGKILL)
    time.sleep(0.5)


def test_cleanup_of_a_killed_run_leaves_nothing_and_spares_running_hosts(key, ip_forward_before):
    start("pytest-killed", key.with_suffix(".pub"))
    survivor = start("pytest-survivor", key.with_suffix(".pub"))
    kill_nspawn("pytest-killed")
    assert hosts("address", "pytest-killed", check=False).returncode == 1
    hosts("cleanup", "--stale")
    assert host_traces("pytest-killed") == []
    assert ssh(survivor, key, "true").returncode == 0
    hosts("stop", "pytest-survivor")
    assert_no_trace("pytest-killed", "pytest-survivor", ip_forward_before=ip_forward_before)


def test_full_cleanup_after_a_killed_run_leaves_nothing(key, ip_forward_before):
    if other_hosts_run():
        pytest.skip("other sandbox hosts run on this machine, and a full cleanup would stop them")
    start("pytest-killed", key.with_suffix(".pub"))
    start("pytest-running", key.with_suffix(".pub"))
    kill_nspawn("pytest-killed")
    hosts("cleanup")
    assert_no_trace("pytest-killed", "pytest-running", ip_forward_before=ip_forward_before)
    hosts("cleanup")  # safe when nothing is left


def test_start_after_a_killed_run_starts_afresh(key):
    start("pytest-restarted", key.with_suffix(".pub"))
    killed_pid = record_of("pytest-restarted")["pid"]
    kill_nspawn("pytest-restarted")
    again = start("pytest-restarted", key.with_suffix(".pub"))
    assert record_of("pytest-restarted")["pid"] != killed_pid
    assert ssh(again, key, "true").returncode == 0
    hosts("stop", "pytest-restarted")
    assert_no_trace("pytest-restarted")


@pytest.mark.parametrize("suite", SUITES)
def test_each_suite_boots_with_ssh_and_sudo(suite, key):
    host = start(f"pytest-{suite}", key.with_suffix(".pub"), "--suite", suite)
    assert host["suite"] == suite
    result = ssh(host, key, ". /etc/os-release && echo $VERSION_CODENAME && sudo -n python3 -c 'import apt'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == suite
    hosts("stop", f"pytest-{suite}")
    assert_no_trace(f"pytest-{suite}")


def test_a_busy_first_boot_lets_ssh_in_while_cloud_init_and_apt_still_run(key, monkeypatch):
    # As on EC2: SSH opens while cloud-init's final stage still runs and unattended-upgrades holds apt's locks.
    monkeypatch.setenv("SANDBOX_HOSTS_FIRST_BOOT_BUSY", "20")
    started = time.monotonic()
    host = start("pytest-busy", key.with_suffix(".pub"), "--wait-login", str(key))
    assert time.monotonic() - started < 15, "start waited for cloud-init to finish"

    status = ssh(host, key, "cloud-init status")
    assert status.stdout.strip() == "status: running", status.stdout + status.stderr
    apt = ssh(host, key, APT_INSTALL_AT_ONCE)
    assert apt.returncode == 100, apt.stdout + apt.stderr
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in apt.stderr
    assert "(unattended-upgr)" in apt.stderr
    # dpkg's own lock too, as an fcntl lock: what dpkg (and apt behind the frontend lock) takes.
    try_lock = "import fcntl, os; fcntl.lockf(os.open('/var/lib/dpkg/lock', os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    dpkg_lock = ssh(host, key, f'sudo python3 -c "{try_lock}"')
    assert dpkg_lock.returncode == 1
    assert "BlockingIOError" in dpkg_lock.stderr, dpkg_lock.stderr

    waited = ssh(host, key, "cloud-init status --wait")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert waited.stdout.split()[-2:] == ["status:", "done"]
    assert time.monotonic() - started >= 20
    assert ssh(host, key, APT_INSTALL_AT_ONCE).returncode == 100  # unattended-upgrades outlasts cloud-init
    deadline = time.monotonic() + 15
    while (apt := ssh(host, key, APT_INSTALL_AT_ONCE)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert apt.returncode == 0, apt.stdout + apt.stderr

    # Only the first boot of an instance is busy: the next one's cloud-init is done in moments, apt's locks free.
    reboot(host, key)
    rebooted = time.monotonic()
    quiet = ssh(host, key, f"cloud-init status --wait && {APT_INSTALL_AT_ONCE}")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert time.monotonic() - rebooted < 10
    hosts("stop", "pytest-busy")
    assert_no_trace("pytest-busy")


def test_a_first_boot_busy_time_must_be_whole_seconds(key, monkeypatch):
    monkeypatch.setenv("SANDBOX_HOSTS_FIRST_BOOT_BUSY", "soon")
    result = hosts("start", "pytest-never-busy", "--public-key", str(key.with_suffix(".pub")), check=False)
    assert result.returncode == 1
    assert "SANDBOX_HOSTS_FIRST_BOOT_BUSY='soon': a whole number of seconds" in result.stderr
    assert host_traces("pytest-never-busy") == []
