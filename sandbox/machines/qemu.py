"""Local qemu VMs that boot like fresh EC2 instances, for the configure roles to SSH into.

The EC2-faithful sibling of sandbox/hosts: a real kernel and a real disk. Each VM is a qemu process
(TCG: this machine's /dev/kvm hangs stock kernels) that boots Debian's kernel and initramfs directly
(-kernel/-initrd) with a qcow2 overlay on the cached disk image as its root volume (so every instance
has a fresh disk). cloud-init reads a NoCloud seed, an ISO 9660 disk labelled `cidata`, as an Ubuntu
cloud image reads EC2's metadata: it creates the user `ubuntu` with passwordless sudo, installs the given
public key, generates the SSH host keys and configures DHCP on the virtio NIC. qemu's user-mode network
forwards a free port of 127.0.0.1 to the VM's port 22, and another to the API's port: an EC2 instance's
address offers every port its security group opens, a VM on 127.0.0.1 only what qemu forwards (`port`
and `api_port` in its record). Inside, 10.0.2.2 is this machine's 127.0.0.1 (the `gateway` through which
the VM reaches e.g. the embedded AWS, and the source address of every forwarded connection, which the
guest's firewall filters as it would any client's) and apt reaches Debian's archive through qemu's NAT.
Nothing needs root but building the image; the state files are root's, so root it is.

  sandbox/vms image [--suite bookworm]                     build (or reuse) the cached disk image and kernel
  sandbox/vms start NAME --public-key KEY.pub [--suite S] [--instance-id ID] [--wait-login PRIVATE_KEY]
                                     boot a VM; print {"name","address","port","api_port","user","suite"} when ready
  sandbox/vms stop NAME | stop --all                       power off and remove every trace of it
  sandbox/vms list | address NAME | port NAME              what runs, and where
  sandbox/vms cleanup [--stale]                            stop every VM, remove every trace, also of killed runs
                                                           (--stale: only the traces; running VMs stay)

Ready means: cloud-init has finished for this instance-id (its final message, which the seed's user-data
sets, appears on the serial console, after the key is installed and the host keys exist) and sshd
answers with its banner on the forwarded port. With --wait-login, also an SSH login with that private key
as `ubuntu` succeeds. The host keys cloud-init prints on the console are kept as a known_hosts file.

Knobs (environment): SANDBOX_VM_MEMORY (MiB, default 1024), SANDBOX_VM_CPUS (default 2),
SANDBOX_VM_DISK_SIZE (the root volume, default 8G; cloud-init grows the filesystem to it),
SANDBOX_BOOT_TIMEOUT (seconds, default 240; SANDBOX_VM_BOOT_TIMEOUT is read too), SANDBOX_VM_API_PORT
(the guest port forwarded as `api_port`, default 11373: the API's port, operator variable api_port).
State lives in $SANDBOX_STATE_DIR (default: the repository's .sandbox/): cache/vm-SUITE-HASH/ holds an
image (disk.qcow2, vmlinuz, initrd.img), vms/NAME/ one VM's overlay, seed, console log and host.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import time
from pathlib import Path

from . import cli, debian
from .debian import MIRROR, bootstrap, read_package_list, sources_list
from .lifecycle import seconds_until_booted, tear_down_stopped
from .locking import locked
from .mounts import remove_tree
from .processes import each_process, kill_pids, kill_until_gone, process_start_time
from .records import CACHE_DIR, DEFAULT_USER, REPO_ROOT, STATE_DIR, Records, is_running
from .shell import Failure, log, run
from .ssh import ssh_ready
from .user_data import merged_user_data
from .waiting import boot_timeout, wait_until

PROGRAM = "sandbox/vms"
NOUN = "VM"
IMAGE_NOUN = "disk image and kernel"
IMAGE_ALIASES: tuple[str, ...] = ()
PUBLIC_FIELDS = ("name", "address", "port", "api_port", "user", "suite")
ROOT_REASON = "debootstrap, chroot; the state is root's"
TOOLS = ("qemu-system-x86_64", "qemu-img", "genisoimage", "debootstrap", "mkfs.ext4")
DEPS_SCRIPT = "sandbox/install-vm-deps"

RECIPE_DIR = REPO_ROOT / "sandbox" / "vm-image"
HOSTS_PACKAGES = REPO_ROOT / "sandbox" / "rootfs" / "packages"  # the sandbox hosts' list, shared
VMS_DIR = STATE_DIR / "vms"
RECORDS = Records(VMS_DIR)
# Builds happen in a directory of their own: sandbox/hosts removes every cache/build-* it finds.
BUILDS_DIR = CACHE_DIR / "vm-builds"

ADDRESS = "127.0.0.1"  # where the forwarded SSH ports listen
# qemu's user-mode network: the guest is 10.0.2.15, 10.0.2.2 is this machine's loopback, 10.0.2.3 DNS.
GATEWAY = "10.0.2.2"
ROOT_LABEL = "cloudimg-rootfs"  # the root filesystem's label, as on Ubuntu's cloud images
KERNEL_COMMAND_LINE = f"root=LABEL={ROOT_LABEL} ro console=ttyS0,115200n8"

MEMORY_MIB = int(os.environ.get("SANDBOX_VM_MEMORY", "1024"))
CPUS = int(os.environ.get("SANDBOX_VM_CPUS", "2"))
DISK_SIZE = os.environ.get("SANDBOX_VM_DISK_SIZE", "8G")
BOOT_TIMEOUT = boot_timeout("SANDBOX_VM_BOOT_TIMEOUT", 240)
# The guest port that gets a forwarded port of its own besides SSH: the API's (operator variable api_port).
GUEST_API_PORT = int(os.environ.get("SANDBOX_VM_API_PORT", "11373"))
STOP_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------------------
# The disk image and kernel
# ---------------------------------------------------------------------------------------------------------


def recipe_packages(suite: str) -> list[str]:
    return read_package_list(HOSTS_PACKAGES, suite) + read_package_list(RECIPE_DIR / "packages", suite)


def recipe_files() -> list[Path]:
    return sorted(p for p in (RECIPE_DIR / "files").rglob("*") if p.is_file())


def customise_image(root: Path, suite: str) -> None:
    """Turn a freshly bootstrapped tree into a cloud image: config files in, per-instance identity out."""
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    (root / "etc/apt/sources.list").write_text(sources_list(suite))
    # networkd applies the network-config that cloud-init renders (Debian does not enable it by default);
    # resolved takes the DNS server from qemu's DHCP, as Ubuntu on EC2 takes the VPC's resolver.
    run("systemctl", f"--root={root}", "enable", "systemd-networkd.service", "systemd-resolved.service")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    # The initramfs again, now with the recipe's module list and compression (the kernel's postinst made
    # one before the recipe files were in place).
    run("chroot", str(root), "update-initramfs", "-u", "-k", "all", env=environment)
    # Identity that must differ per instance: host keys (cloud-init makes new ones), machine-id (systemd
    # makes one at first boot from an empty file) and hostname (from the seed).
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    for path in ("var/lib/dbus/machine-id", "etc/hostname"):
        (root / path).unlink(missing_ok=True)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "var/lib/cloud", "var/log/apt", "tmp"):
        for entry in (root / leftover).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
            elif entry.is_dir() and entry.name != "partial":
                shutil.rmtree(entry)


def recipe_hash(suite: str) -> str:
    header = f"suite={suite}\nmirror={MIRROR}\nlabel={ROOT_LABEL}\n"
    functions = (customise_image, install_recipe_files, make_disk)
    return debian.recipe_hash(header, recipe_packages(suite), suite, functions, recipe_files(), RECIPE_DIR)


def image_dir(suite: str) -> Path:
    return CACHE_DIR / f"vm-{suite}-{recipe_hash(suite)}"


def image_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ("disk.qcow2", "vmlinuz", "initrd.img"))


def install_recipe_files(root: Path) -> None:
    for source in recipe_files():
        target = root / source.relative_to(RECIPE_DIR / "files")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o644)


def make_disk(root: Path, output: Path) -> None:
    """An ext4 filesystem made straight from the tree (no loop device, no partition table), as qcow2."""
    used = int(run("du", "--summarize", "--bytes", "--one-file-system", str(root)).stdout.split()[0])
    size_mib = (used * 13 // 10 >> 20) + 512  # room for the first apt runs; cloud-init grows it at boot
    raw = output.with_suffix(".raw")
    with open(raw, "wb") as disk:
        disk.truncate(size_mib << 20)
    run("mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), str(raw))
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(output))
    raw.unlink()


def build_image(suite: str) -> Path:
    target = image_dir(suite)
    if image_complete(target):
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    build = BUILDS_DIR / target.name
    remove_tree(build)  # a killed earlier build
    build.mkdir(parents=True)
    started = time.monotonic()
    log(f"building the {suite} VM image (debootstrap, a few minutes) into {target.name}")
    packages = recipe_packages(suite)
    root = build / "root"
    try:

        def customise() -> None:  # update-initramfs in customise_image needs the chroot's /proc and /sys
            install_recipe_files(root)
            customise_image(root, suite)

        bootstrap(root, suite, packages, in_chroot=customise)
        output = build / "image"
        output.mkdir()
        # The newest kernel and its initramfs, for qemu's direct boot (/boot keeps them for the record).
        kernels = sorted((root / "boot").glob("vmlinuz-*"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)])
        if not kernels:
            raise Failure("the image has no kernel in /boot")
        version = kernels[-1].name.removeprefix("vmlinuz-")
        shutil.copyfile(kernels[-1], output / "vmlinuz")
        shutil.copyfile(root / "boot" / f"initrd.img-{version}", output / "initrd.img")
        make_disk(root, output / "disk.qcow2")
        built_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        summary = {"suite": suite, "kernel": version, "packages": packages, "built": built_at}
        (output / "recipe.json").write_text(json.dumps(summary, indent=2) + "\n")
        remove_tree(target)
        output.rename(target)
    finally:
        remove_tree(build)
    size = sum(f.stat().st_size for f in target.iterdir()) >> 20
    log(f"built {target.name} (kernel {version}, {size} MiB) in {time.monotonic() - started:.0f} s")
    prune_images(suite, keep=target)
    return target


def image(suite: str) -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with locked(CACHE_DIR / f".vm-{suite}.lock"):  # one build of a suite at a time
        return build_image(suite)


def prune_images(suite: str, keep: Path) -> None:
    """Drop the images of older recipes of this suite, unless a VM still runs on one."""
    in_use = {record.get("image") for record in RECORDS.all()}
    for old in CACHE_DIR.glob(f"vm-{suite}-*"):
        if old != keep and str(old) not in in_use:
            log(f"removing {old.name} (an older recipe)")
            remove_tree(old)


# ---------------------------------------------------------------------------------------------------------
# The VMs' processes
# ---------------------------------------------------------------------------------------------------------


def qemu_pids_under(directory: Path) -> list[int]:
    """qemu processes whose command line names a file below `directory` (also those no record knows)."""
    prefix = str(directory).rstrip("/") + "/"
    return [
        pid
        for pid, argv in each_process(command_line_text)
        if argv and Path(argv[0]).name.startswith("qemu-system") and any(prefix in arg for arg in argv)
    ]


def command_line_text(entry: Path) -> list[str]:
    return (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")


# ---------------------------------------------------------------------------------------------------------
# Starting and stopping VMs
# ---------------------------------------------------------------------------------------------------------


def mac_address(name: str) -> str:
    """A stable locally administered MAC per VM name (qemu's OUI 52:54:00), which network-config matches."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in digest[:3])


def ready_message(instance_id: str) -> str:
    return f"sandbox/vms: cloud-init finished on instance {instance_id}"


def write_seed(directory: Path, record: dict) -> Path:
    """The NoCloud seed: what EC2's metadata service tells an Ubuntu cloud image at first boot."""
    seed = directory / "seed"
    seed.mkdir()
    (seed / "meta-data").write_text(
        f"instance-id: {record['instance_id']}\nlocal-hostname: {record['name']}\n"
        f"public-keys:\n  - {json.dumps(record['public_key'])}\n"
    )
    # The default user is defined in the image (sandbox/vm-image/files/etc/cloud/cloud.cfg.d/), as on an
    # Ubuntu cloud image. The final message, on the serial console, tells `start` that the boot is done.
    sandbox_config = {"users": ["default"], "final_message": ready_message(record["instance_id"]) + " after $UPTIME s"}
    (seed / "user-data").write_text(merged_user_data(sandbox_config, record.get("user_data", "")))
    # EC2 gives the primary interface its address by DHCP; so does qemu's user-mode network.
    (seed / "network-config").write_text(
        f'version: 2\nethernets:\n  primary:\n    match: {{macaddress: "{record["mac"]}"}}\n    dhcp4: true\n'
    )
    iso = directory / "seed.iso"
    run(
        "genisoimage",
        "-quiet",
        "-output",
        str(iso),
        "-volid",
        "cidata",
        "-joliet",
        "-rock",
        str(seed / "user-data"),
        str(seed / "meta-data"),
        str(seed / "network-config"),
    )
    return iso


def console_text(record: dict) -> str:
    with contextlib.suppress(OSError):
        return (RECORDS.machine_dir(record["name"]) / "console.log").read_text(errors="replace")
    return ""


def console_tail(record: dict, lines: int = 30) -> str:
    return "\n".join(console_text(record).splitlines()[-lines:]) or "(no console output)"


def cloud_init_finished(record: dict) -> bool:
    return ready_message(record["instance_id"]) in console_text(record)


def save_host_keys(record: dict) -> None:
    """Keep the host keys cloud-init printed on the console as a known_hosts file for [address]:port."""
    text = console_text(record).replace("\r", "")
    block = re.search(r"-----BEGIN SSH HOST KEY KEYS-----\n(.*?)-----END SSH HOST KEY KEYS-----", text, re.DOTALL)
    if not block:
        return
    keys = [line.split()[:2] for line in block.group(1).splitlines() if re.match(r"^(ssh-|ecdsa-)\S+ \S+", line)]
    known_hosts = RECORDS.machine_dir(record["name"]) / "known_hosts"
    known_hosts.write_text("".join(f"[{record['address']}]:{record['port']} {kind} {key}\n" for kind, key in keys))


def wait_ready(record: dict, login_key: Path | None = None) -> None:
    """Until cloud-init has finished for this instance and sshd answers (and, if asked, a login works)."""

    def ready() -> bool:
        # qemu accepts on the forwarded port at once and passes sshd's banner on once the guest sends it.
        return cloud_init_finished(record) and ssh_ready(
            DEFAULT_USER, ADDRESS, record["port"], login_key, connect_timeout=2, read_timeout=5
        )

    waited = seconds_until_booted(record, "qemu", ready, console_tail, BOOT_TIMEOUT, interval=0.5)
    if waited is None:
        raise Failure(
            f"{record['name']}: not ready at {where(record)} after {BOOT_TIMEOUT:.0f} s "
            f"(SANDBOX_BOOT_TIMEOUT); console:\n{console_tail(record)}"
        )
    if not (RECORDS.machine_dir(record["name"]) / "known_hosts").exists():
        save_host_keys(record)
    log(f"{record['name']}: SSH ready at {where(record)} after {waited:.1f} s")


def where(record: dict) -> str:
    return f"{record['address']}:{record['port']}"


def free_port(also_taken: tuple[int, ...] = ()) -> int:
    taken = {port for record in RECORDS.all() for port in (record.get("port"), record.get("api_port"))}
    taken.update(also_taken)
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((ADDRESS, 0))
            port = probe.getsockname()[1]
        if port not in taken:
            return port
    raise Failure("found no free port on 127.0.0.1")


def new_record(name: str, suite: str, instance_id: str, public_key: str) -> dict:
    """A VM's record before it boots: its image built; its ports come with the boot."""
    built = image(suite)
    directory = RECORDS.machine_dir(name)
    return {
        "name": name,
        "address": ADDRESS,
        "port": None,
        "api_port": None,
        "user": DEFAULT_USER,
        "suite": suite,
        "gateway": GATEWAY,
        "instance_id": instance_id,
        "public_key": public_key,
        "mac": mac_address(name),
        "memory_mib": MEMORY_MIB,
        "cpus": CPUS,
        "image": str(built),
        "overlay": str(directory / "disk.qcow2"),
        "seed": str(directory / "seed.iso"),
        "console": str(directory / "console.log"),
        "known_hosts": str(directory / "known_hosts"),
    }


def qemu_command(record: dict, directory: Path, built: Path) -> list[str]:
    # SSH to the port sshd listens on inside (the instance's user data may move it), the API to its own.
    forwards = (
        f"hostfwd=tcp:{ADDRESS}:{record['port']}-:{record.get('ssh_port', 22)},"
        f"hostfwd=tcp:{ADDRESS}:{record['api_port']}-:{GUEST_API_PORT}"
    )
    return [
        "qemu-system-x86_64",
        "-name",
        f"sandbox-vm-{record['name']}",
        # TCG, many threads, a large translation cache: /dev/kvm here only runs PVM guests.
        "-machine",
        "q35",
        "-accel",
        "tcg,thread=multi,tb-size=256",
        "-cpu",
        "max",
        "-smp",
        str(record["cpus"]),
        "-m",
        str(record["memory_mib"]),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-kernel",
        str(built / "vmlinuz"),
        "-initrd",
        str(built / "initrd.img"),
        "-append",
        KERNEL_COMMAND_LINE,
        # The disk is thrown away with the VM, so no write needs to reach the platter.
        "-drive",
        f"file={record['overlay']},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-drive",
        f"file={record['seed']},if=virtio,format=raw,readonly=on",
        "-netdev",
        f"user,id=net0,hostname={record['name']},{forwards}",
        "-device",
        f"virtio-net-pci,netdev=net0,mac={record['mac']},romfile=",
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{record['console']}",
        "-pidfile",
        str(directory / "qemu.pid"),
        "-daemonize",
    ]


def boot(record: dict) -> None:
    """Give the VM its fresh disk and seed, and launch qemu on a free port (another, if that one is taken)."""
    name = record["name"]
    directory, built = RECORDS.machine_dir(name), Path(record["image"])
    run(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        str(built / "disk.qcow2"),
        record["overlay"],
        DISK_SIZE,
    )
    write_seed(directory, record)
    for attempt in (1, 2, 3):
        port = free_port()
        record.update(port=port, api_port=free_port(also_taken=(port,)))
        RECORDS.write(record)
        result = run(*qemu_command(record, directory, built), check=False, quiet=True)
        if result.returncode == 0:
            break
        if attempt == 3 or "hostfwd" not in result.stderr and "host forwarding" not in result.stderr:
            raise Failure(f"qemu did not start ({result.returncode}): {result.stderr.strip()[-1500:]}")
        log(f"{name}: port {port} or {record['api_port']} was taken meanwhile, trying others")
    pid = int((directory / "qemu.pid").read_text().split()[0])
    record.update(pid=pid, pid_start_time=process_start_time(pid))
    RECORDS.write(record)
    log(
        f"{name}: booting {record['suite']} with SSH on {ADDRESS}:{port} and port {GUEST_API_PORT} on "
        f"{ADDRESS}:{record['api_port']} (qemu pid {pid}, TCG, about a minute)"
    )


def teardown(record: dict) -> None:
    """Power off one VM and remove everything it had. Like an EC2 termination, the disk goes with it, so
    qemu just ends (SIGTERM) rather than waiting for the guest to shut down."""
    name = record["name"]
    directory = RECORDS.machine_dir(name)
    if is_running(record):
        kill_pids([record["pid"]], signal.SIGTERM)
        if not wait_until(lambda: not is_running(record), STOP_TIMEOUT):
            log(f"{name}: qemu did not end within {STOP_TIMEOUT:.0f} s, killing it")
    # Whatever is left, also a qemu no record knows of.
    kill_until_gone(lambda: set(qemu_pids_under(directory)) | ({record["pid"]} if is_running(record) else set()))
    remove_tree(directory)


def reap_stale() -> None:
    """Remove what killed runs left behind, without touching VMs that run."""
    tear_down_stopped(RECORDS, teardown)
    for build in BUILDS_DIR.glob("vm-*"):
        suite = build.name.split("-")[1]
        with locked(CACHE_DIR / f".vm-{suite}.lock", wait=False) as ours:
            if ours:  # not while that suite is being built
                remove_tree(build)


def after_stop() -> None:
    """Nothing: VMs share no more than ports, which go with their qemu."""


def after_cleanup(stale_only: bool) -> None:
    """A qemu whose directory is already gone; with --stale, one that a running VM's record names stays."""
    running = {record["pid"] for record in RECORDS.running()} if stale_only else set()
    kill_pids([pid for pid in qemu_pids_under(VMS_DIR) if pid not in running])


# ---------------------------------------------------------------------------------------------------------
# Command line: the verbs of sandbox/vms alone
# ---------------------------------------------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction) -> None:
    port_parser = commands.add_parser("port", help="print a running VM's forwarded SSH port (exit 1 if it is not)")
    port_parser.add_argument("name", type=cli.instance_name(NOUN))


def run_command(arguments: argparse.Namespace) -> int:
    return cli.print_field(RECORDS, arguments.name, "port")
