"""sandbox/vms boots qemu VMs that behave like fresh EC2 instances of an Ubuntu cloud image.

These tests boot one real VM (qemu TCG, about a minute) and reboot it once, so they run only when
SANDBOX_VM_TESTS=1 and as root. They share the machine's sandbox: they begin and end with `sandbox/vms
cleanup`, which stops every sandbox VM. The first run builds the disk image (a few minutes); later runs
reuse the cache.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from sandbox_cli import SandboxTool, ssh

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "sandbox"))
from machines.ssh import ssh_answers  # noqa: E402

VMS = REPO_ROOT / "sandbox" / "vms"
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO_ROOT / ".sandbox").resolve()
VMS_DIR = STATE_DIR / "vms"
NAME = "coffee-ranker-i-0a1b2c3d4e5f60718"  # as the lead's inventory names them: project and instance id

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(
        os.environ.get("SANDBOX_VM_TESTS") != "1",
        reason="boots a qemu VM (about a minute, TCG): set SANDBOX_VM_TESTS=1 to run",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox VMs need root (image build, root-owned state)"),
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 is missing: run sandbox/install-vm-deps"
    ),
]

vms = SandboxTool(VMS, VMS_DIR, timeout=900)
start = vms.start
record_of = vms.record_of


def traces() -> list[str]:
    """Everything a VM can leave on the machine; empty when no VM runs and none was left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("qemu-system") and str(VMS_DIR) in cmdline:
                found.append(f"process {entry.name}: {cmdline}")
    if VMS_DIR.is_dir():
        found += [f"state {entry}" for entry in VMS_DIR.iterdir() if entry.name != ".lock"]
    return found


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    vms("cleanup")
    private_key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pytest@sandbox-vm", "-f", str(private_key)], check=True
    )
    yield private_key
    vms("cleanup")


@pytest.fixture(scope="module")
def vm(key) -> dict:
    return start(NAME, key.with_suffix(".pub"))


def test_start_prints_the_vm_as_json_and_records_it(vm):
    assert vm == {
        "name": NAME,
        "address": "127.0.0.1",
        "port": vm["port"],
        "api_port": vm["api_port"],
        "user": "ubuntu",
        "suite": "bookworm",
    }
    assert vm["api_port"] != vm["port"]
    record = record_of(NAME)
    # The fields the sandbox inventory reads: where to SSH to, where clients reach the API, and where the
    # VM finds this machine.
    assert (record["address"], record["port"], record["api_port"], record["gateway"]) == (
        "127.0.0.1",
        vm["port"],
        vm["api_port"],
        "10.0.2.2",
    )
    assert Path(f"/proc/{record['pid']}/cmdline").read_bytes().startswith(b"qemu-system-x86_64")
    assert vms("address", NAME).stdout.strip() == "127.0.0.1"
    assert vms("port", NAME).stdout.strip() == str(vm["port"])
    assert vm in json.loads(vms("list").stdout)


def test_ubuntu_logs_in_with_the_given_key_and_has_passwordless_sudo(vm, key):
    result = ssh(vm, key, "sudo -n true && whoami && cat ~/.ssh/authorized_keys")
    assert result.returncode == 0, result.stderr
    user, *authorized_keys = result.stdout.splitlines()
    assert user == "ubuntu"
    assert authorized_keys == [key.with_suffix(".pub").read_text().strip()]


def test_vm_boots_like_a_cloud_instance(vm, key):
    # is-system-running waits for the boot to finish; "degraded" is what many cloud images report too.
    state = ssh(vm, key, "systemctl is-system-running --wait").stdout.strip()
    assert state in ("running", "degraded"), ssh(vm, key, "systemctl --failed --no-legend").stdout
    result = ssh(
        vm,
        key,
        "hostname && getent hosts $(hostname) && systemd-detect-virt && cloud-init status "
        "&& sudo cloud-init query instance_id",
    )
    assert result.returncode == 0, result.stderr
    hostname, resolved, virtualisation, cloud_init, instance_id = result.stdout.splitlines()
    assert hostname == NAME
    assert resolved.split()[-1] == NAME
    assert virtualisation == "qemu"  # a real VM with its own kernel, not a container
    assert cloud_init == "status: done"
    assert instance_id == NAME


def test_the_given_host_keys_are_the_vm_own_and_recorded(vm, key):
    machine_id, host_key = ssh(vm, key, "cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub").stdout.splitlines()
    assert len(machine_id) == 32
    known_hosts = (VMS_DIR / NAME / "known_hosts").read_text()
    assert f"[127.0.0.1]:{vm['port']} {' '.join(host_key.split()[:2])}" in known_hosts.splitlines()


def test_the_vm_reaches_this_machines_loopback_through_the_gateway(vm, key):
    token = f"reached from the VM {time.time()}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(token.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # loopback only, like the embedded AWS
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gateway = record_of(NAME)["gateway"]
        result = ssh(vm, key, f"curl --silent --show-error --max-time 30 http://{gateway}:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert result.stdout == token


def test_the_api_port_of_the_vm_is_forwarded_to_its_own_loopback_port(vm, key):
    # Whatever listens on the guest's port 11373 (the API's) answers on 127.0.0.1:<api_port> here.
    token = f"served by the VM {time.time()}"
    serve = (
        f"mkdir -p /tmp/api-probe && printf %s '{token}' > /tmp/api-probe/index.html && "
        "cd /tmp/api-probe && (setsid python3 -m http.server 11373 >/dev/null 2>&1 & echo $! > pid)"
    )
    assert ssh(vm, key, serve).returncode == 0
    try:
        body = None
        for _ in range(40):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{vm['api_port']}/", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.5)
    finally:
        ssh(vm, key, "kill $(cat /tmp/api-probe/pid); rm -rf /tmp/api-probe")
    assert body == token


def test_starting_a_running_vm_changes_nothing(vm, key):
    pid_before = record_of(NAME)["pid"]
    assert start(NAME, key.with_suffix(".pub")) == vm
    assert record_of(NAME)["pid"] == pid_before


def test_a_reboot_is_a_real_reboot_in_the_same_qemu_with_ssh_on_the_same_port(vm, key):
    # As an instance's: a new kernel boot (new boot id) on the same disk, with the same host keys and port.
    pid = record_of(NAME)["pid"]
    before = ssh(vm, key, "echo 'written before the reboot' > ~/before-reboot && cat /proc/sys/kernel/random/boot_id")
    assert before.returncode == 0, before.stderr
    with contextlib.suppress(subprocess.TimeoutExpired):  # may lose the connection on its way down
        ssh(vm, key, "sudo systemctl reboot", timeout=60)
    deadline = time.monotonic() + 300
    while True:
        # qemu accepts on the forwarded port even while the guest is down: wait for sshd's banner first.
        if ssh_answers(vm["address"], vm["port"], connect_timeout=2, read_timeout=5):
            # The banner may still come from the system going down, or from one not yet up: qemu keeps the
            # forwarded connection while the guest reboots, so a login can hang past the timeout (CI, under
            # TCG on a busy machine). That counts as "not back yet".
            try:
                after = ssh(vm, key, "cat /proc/sys/kernel/random/boot_id ~/before-reboot", timeout=60)
            except subprocess.TimeoutExpired:
                after = None
            if after and after.returncode == 0 and after.stdout.split()[0] != before.stdout.strip():
                break
        assert time.monotonic() < deadline, "the VM did not come back within 300 s"
        time.sleep(2)
    assert after.stdout.splitlines()[1] == "written before the reboot"
    assert record_of(NAME)["pid"] == pid
    assert vms("port", NAME).stdout.strip() == str(vm["port"])
    scanned = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", "-p", str(vm["port"]), "127.0.0.1"], capture_output=True, text=True, timeout=60
    )
    assert scanned.stdout.strip() in (VMS_DIR / NAME / "known_hosts").read_text().splitlines(), scanned.stderr


def test_stop_removes_every_trace(vm, key):
    overlay = Path(record_of(NAME)["overlay"])
    assert overlay.exists()
    vms("stop", NAME)
    assert vms("address", NAME, check=False).returncode == 1
    assert not overlay.exists()
    assert not (VMS_DIR / NAME).exists()
    assert traces() == []
    assert json.loads(vms("list").stdout) == []
    vms("stop", "--all")  # safe when nothing runs
    vms("stop", "never-started")


def test_cleanup_after_a_killed_start_leaves_nothing(key):
    starting = subprocess.Popen(
        [str(VMS), "start", "pytest-killed", "--public-key", str(key.with_suffix(".pub"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (VMS_DIR / "pytest-killed" / "host.json").exists() or "pid" not in record_of("pytest-killed"):
            assert starting.poll() is None, "start ended before it launched qemu"
            assert time.monotonic() < deadline, "start did not launch qemu within a minute"
            time.sleep(0.2)
    finally:
        starting.kill()  # the start command and its VM die, as when a CI job is cancelled
        starting.wait()
    os.kill(record_of("pytest-killed")["pid"], signal.SIGKILL)
    vms("cleanup")
    assert traces() == []
