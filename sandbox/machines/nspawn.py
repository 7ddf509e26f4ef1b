"""Local hosts that boot like fresh EC2 instances, for the configure roles to SSH into.

Each host is a Debian root filesystem booted with `systemd-nspawn --boot` on its own overlayfs (so every
instance has a fresh disk) in its own network namespace. cloud-init reads a NoCloud seed, as an Ubuntu
cloud image reads EC2's metadata: it creates the user `ubuntu` with passwordless sudo, installs the given
public key and configures the static address. Nothing is contacted but 127.0.0.0/8, the hosts' own
subnet, and (through NAT for that subnet only) Debian's archive and the machine's DNS resolver.

  sandbox/hosts image [--suite bookworm]                   build (or reuse) the cached root filesystem
                                                           (`rootfs`: the same, by its older name)
  sandbox/hosts start NAME --public-key KEY.pub [--suite S] [--instance-id ID] [--wait-login PRIVATE_KEY]
                                                           boot a host; print {"name","address","user","suite"}
  sandbox/hosts stop NAME | stop --all                     power off and remove every trace of it
  sandbox/hosts list | address NAME                        what runs, and where
  sandbox/hosts cleanup [--stale]                          stop every host, remove every trace, also of killed runs
                                                           (--stale: only the traces; running hosts stay)

Address plan: 10.213.0.0/16 belongs to these hosts. Host number N (slot 1-250) gets the /24 10.213.N.0:
the machine's end of the veth pair is 10.213.N.1 (the host's gateway), the host itself is 10.213.N.2.
NAT (MASQUERADE, with ip_forward on) covers that subnet only, from the first host start to the last stop.
DNS: the hosts use the machine's own resolver (first IPv4 nameserver of /etc/resolv.conf) through the NAT;
one on the loopback (e.g. 127.0.0.53) is out of their reach, so then a small forwarder on the gateway
address relays to it. The embedded AWS listens on the machine's loopback only: a relay on each gateway
(port of $SANDBOX_AWS_ENDPOINT, default 5000) lets the host reach it at http://<gateway>:5000.
Ready means: cloud-init has finished for this instance-id and installed the key, and sshd answers on
port 22 (with --wait-login, also an SSH login with that private key as `ubuntu` succeeds), within
$SANDBOX_BOOT_TIMEOUT seconds (default 120; SANDBOX_HOSTS_BOOT_TIMEOUT is read too).

A busy first boot, as Ubuntu's on EC2: with SANDBOX_HOSTS_FIRST_BOOT_BUSY=N (seconds; default 0, a quiet
first boot) in the environment of `start`, the seed's user-data keeps cloud-init's final stage running for
N seconds (`runcmd: sleep N`, so `cloud-init status` says running and `cloud-init status --wait` blocks),
and a process started at `bootcmd` (once per instance, through cloud-init-per; before sshd starts) holds
the dpkg locks apt takes (/var/lib/dpkg/lock-frontend and /var/lib/dpkg/lock, fcntl locks) until
cloud-init has finished and 5 s more, as apt-daily and unattended-upgrades do. `start` is then ready as
soon as the key is installed and SSH answers (and --wait-login logs in): cloud-init goes on meanwhile.
Later boots of the instance are quiet.

Reboots, as an instance's: the same disk, address and instance-id. The host's process (the record's pid)
is a supervisor (`sandbox/hosts supervise`, not for people to run) that runs systemd-nspawn, and runs it
again with the same overlay, network namespace and console log (appended) when the container reboots
(`systemctl reboot`, `shutdown -r`: nspawn exits with 133). cloud-init sees the same instance-id, so it
keeps the host keys and runs no per-instance module again. A poweroff inside ends the host (its record
stays until `stop`); `stop` sends the supervisor SIGTERM, which it passes on to nspawn: an orderly
poweroff, and no boot after it. Inside a container /proc/sys/kernel/random/boot_id is nspawn's, new at
each boot, and PID 1's start time (field 22 of /proc/1/stat) changes too: either tells Ansible's reboot
module that the host came back.

State lives in $SANDBOX_STATE_DIR (default: the repository's .sandbox/): cache/ holds the root
filesystems, hosts/NAME/ one host's overlay, seed, console log (every boot's), supervisor log and record.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from . import debian
from .debian import MIRROR, SUITES, bootstrap, read_package_list, sources_list
from .lifecycle import seconds_until_booted, tear_down_stopped
from .locking import locked
from .mounts import remove_tree, unmount_all_under
from .processes import command_line, each_process, kill_pids, kill_until_gone, process_alive, process_start_time
from .records import CACHE_DIR, DEFAULT_USER, REPO_ROOT, STATE_DIR, Records, is_running
from .shell import Failure, log, run
from .ssh import ssh_ready
from .user_data import merged_user_data
from .waiting import boot_timeout, wait_until

PROGRAM = "sandbox/hosts"
NOUN = "host"
IMAGE_NOUN = "root filesystem"
IMAGE_ALIASES = ("rootfs",)  # the verb's name before both tools shared their command line
PUBLIC_FIELDS = ("name", "address", "user", "suite")
ROOT_REASON = "mounts, network namespaces, iptables"
TOOLS = ("systemd-nspawn", "debootstrap", "iptables", "ip")
DEPS_SCRIPT = "sandbox/install-host-deps"
ENTRY_POINT = REPO_ROOT / "sandbox" / "hosts"  # runs the supervisor, the DNS forwarder and the loopback relays too

RECIPE_DIR = REPO_ROOT / "sandbox" / "rootfs"
HOSTS_DIR = STATE_DIR / "hosts"
RECORDS = Records(HOSTS_DIR)

SUBNET = ipaddress.ip_network("10.213.0.0/16")
SLOTS = range(1, 251)
NETNS_PREFIX = "sandbox-host-"  # + NAME: one network namespace per host, under /run/netns/
VETH_PREFIX = "ve-sandbox-"  # + slot: the machine's end; at most 14 characters, under the 15 of IFNAMSIZ
LINK_ALIAS_PREFIX = "sandbox host "  # + NAME: tells whose a veth is, in `ip link` too
RULE_COMMENT = "sandbox-hosts"  # marks every iptables rule this tool adds, so cleanup finds them all

BOOT_TIMEOUT = boot_timeout("SANDBOX_HOSTS_BOOT_TIMEOUT", 120)
STOP_TIMEOUT = 20.0


# ---------------------------------------------------------------------------------------------------------
# The root filesystem
# ---------------------------------------------------------------------------------------------------------


def recipe_packages(suite: str) -> list[str]:
    return read_package_list(RECIPE_DIR / "packages", suite)


def recipe_files() -> list[Path]:
    return sorted(p for p in (RECIPE_DIR / "files").rglob("*") if p.is_file())


def customise_rootfs(root: Path, suite: str) -> None:
    """Turn a freshly bootstrapped tree into a cloud image: config files in, per-instance identity out."""
    for source in recipe_files():
        target = root / source.relative_to(RECIPE_DIR / "files")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o644)
    (root / "etc/apt/sources.list").write_text(sources_list(suite))
    # networkd applies the network-config that cloud-init renders (Debian does not enable it by default),
    # unless cloud-init renders for ifupdown; then an idle networkd would hold the boot in wait-online.
    if "ifupdown" not in recipe_packages(suite):
        run("systemctl", f"--root={root}", "enable", "systemd-networkd.service")
    # Identity that must differ per instance: host keys (cloud-init makes new ones), machine-id (systemd
    # makes one at first boot from an empty file), hostname and resolver (the seed and `start` set them).
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    for path in ("var/lib/dbus/machine-id", "etc/hostname", "etc/resolv.conf"):
        (root / path).unlink(missing_ok=True)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "var/lib/cloud", "var/log/apt"):
        for entry in (root / leftover).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
            elif entry.is_dir() and entry.name != "partial":
                shutil.rmtree(entry)


def recipe_hash(suite: str) -> str:
    header = f"suite={suite}\nmirror={MIRROR}\n"
    return debian.recipe_hash(header, recipe_packages(suite), suite, (customise_rootfs,), recipe_files(), RECIPE_DIR)


def rootfs_tarball(suite: str) -> Path:
    return CACHE_DIR / f"rootfs-{suite}-{recipe_hash(suite)}.tar.zst"


def build_rootfs(suite: str) -> Path:
    tarball = rootfs_tarball(suite)
    if tarball.exists():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    build = CACHE_DIR / f"build-{tarball.name.removesuffix('.tar.zst')}"
    remove_tree(build)  # a killed earlier build
    started = time.monotonic()
    log(f"building the {suite} root filesystem (debootstrap, about a minute) into {tarball.name}")
    packages = recipe_packages(suite)
    try:
        root = build / "root"
        bootstrap(root, suite, packages)
        customise_rootfs(root, suite)
        partial = build / "rootfs.tar.zst"
        run(
            "tar",
            "--create",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--zstd",
            f"--file={partial}",
            f"--directory={root}",
            ".",
        )
        partial.rename(tarball)
    finally:
        remove_tree(build)
    log(f"built {tarball.name} ({tarball.stat().st_size >> 20} MiB) in {time.monotonic() - started:.0f} s")
    prune_rootfs(suite, keep=tarball)
    return tarball


def lower_dir(suite: str) -> Path:
    """The cached rootfs extracted once per recipe: the read-only lower layer of every host's overlay."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with locked(CACHE_DIR / f".rootfs-{suite}.lock"):  # one build or extraction of a suite at a time
        return extracted_rootfs(suite)


def remove_abandoned_builds() -> None:
    """Build and extraction directories of killed runs (not those of a build going on right now)."""
    for suite in SUITES:
        leftovers = [*CACHE_DIR.glob(f"build-rootfs-{suite}-*"), *CACHE_DIR.glob(f"extract-rootfs-{suite}-*")]
        if not leftovers:
            continue
        with locked(CACHE_DIR / f".rootfs-{suite}.lock", wait=False) as ours:
            for leftover in leftovers if ours else []:
                remove_tree(leftover)


def extracted_rootfs(suite: str) -> Path:
    tarball = build_rootfs(suite)
    lower = CACHE_DIR / tarball.name.removesuffix(".tar.zst")
    if (lower / "etc/os-release").exists() or (lower / "usr/lib/os-release").exists():
        return lower
    partial = CACHE_DIR / f"extract-{lower.name}"
    remove_tree(partial)
    partial.mkdir(parents=True)
    started = time.monotonic()
    run(
        "tar",
        "--extract",
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--acls",
        "--zstd",
        f"--file={tarball}",
        f"--directory={partial}",
    )
    remove_tree(lower)
    partial.rename(lower)
    log(f"extracted {tarball.name} in {time.monotonic() - started:.1f} s")
    return lower


def prune_rootfs(suite: str, keep: Path) -> None:
    """Drop the root filesystems of older recipes of this suite, unless a host still runs on one."""
    in_use = {record.get("lower") for record in RECORDS.all()}
    for old in CACHE_DIR.glob(f"rootfs-{suite}-*"):
        if (
            old.name.removesuffix(".tar.zst") != keep.name.removesuffix(".tar.zst")
            and str(CACHE_DIR / old.name.removesuffix(".tar.zst")) not in in_use
        ):
            log(f"removing {old.name} (an older recipe)")
            if old.is_dir():
                remove_tree(old)
            else:
                old.unlink()


# ---------------------------------------------------------------------------------------------------------
# The hosts' processes and cgroups
# ---------------------------------------------------------------------------------------------------------


def pids_in_netns(netns: str) -> list[int]:
    if not Path(f"/run/netns/{netns}").exists():
        return []
    result = run("ip", "netns", "pids", netns, check=False, quiet=True)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def pids_rooted_under(directory: Path) -> list[int]:
    """Processes whose root directory is inside `directory` (a container whose nspawn was killed)."""
    prefix = str(directory).rstrip("/") + "/"
    roots = each_process(lambda entry: os.readlink(entry / "root"))
    return [pid for pid, root in roots if root == str(directory) or root.startswith(prefix)]


def runs_nspawn(argv: list[bytes]) -> bool:
    """The command line of a systemd-nspawn, or of a supervisor that runs one (its command follows `--`)."""
    return any(arg.endswith(b"systemd-nspawn") for arg in argv)


def nspawn_pids_for(directory: Path) -> list[int]:
    """systemd-nspawn processes, and their supervisors, started by this tool on a directory below `directory`."""
    option = f"--directory={directory}/".encode()
    return [
        pid
        for pid, argv in each_process(command_line)
        if runs_nspawn(argv) and any(arg.startswith(option) for arg in argv)
    ]


CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_GROUP = "sandbox-hosts"


def cgroup_hierarchies() -> list[Path]:
    """The hierarchies systemd-nspawn places a container in: the unified one, and on a hybrid host also
    the named systemd one."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return [CGROUP_ROOT / name for name in ("systemd", "unified") if (CGROUP_ROOT / name / "cgroup.procs").exists()]


def cgroups_of(name: str | None) -> list[Path]:
    """Each host's own cgroup (nspawn makes supervisor/ and payload/ in it). Without one, every nspawn
    started from the same cgroup would share one payload/, and the containers' systemds would manage, and
    kill, each other's services."""
    return [hierarchy / CGROUP_GROUP / name if name else hierarchy / CGROUP_GROUP for hierarchy in cgroup_hierarchies()]


def cgroup_mover(name: str):
    """Make the host's cgroups; return what moves a child process into them (run between fork and exec)."""
    cgroups = cgroups_of(name)
    for cgroup in cgroups:
        cgroup.mkdir(parents=True, exist_ok=True)

    def move_into_cgroups() -> None:
        for cgroup in cgroups:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    return move_into_cgroups


def pids_in_cgroups(name: str | None) -> list[int]:
    found = []
    for cgroup in cgroups_of(name):
        for procs in cgroup.rglob("cgroup.procs") if cgroup.is_dir() else []:
            with contextlib.suppress(OSError):
                found += [int(pid) for pid in procs.read_text().split()]
    return found


def remove_cgroups(name: str | None) -> None:
    """rmdir a host's cgroups bottom-up (they must be empty of processes by now)."""
    for cgroup in cgroups_of(name):
        if cgroup.is_dir():
            for directory in sorted(
                (p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ) + [cgroup]:
                with contextlib.suppress(OSError):
                    directory.rmdir()


# ---------------------------------------------------------------------------------------------------------
# Network: veth pairs, NAT for the hosts' subnet only, DNS
# ---------------------------------------------------------------------------------------------------------


def slot_network(slot: int) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(f"{SUBNET.network_address + (slot << 8)}/24")


def gateway_address(slot: int) -> str:
    return str(slot_network(slot).network_address + 1)


def host_address(slot: int) -> str:
    return str(slot_network(slot).network_address + 2)


def existing_links() -> list[str]:
    return [entry.name for entry in Path("/sys/class/net").iterdir()]


def existing_netns() -> list[str]:
    directory = Path("/run/netns")
    return [entry.name for entry in directory.iterdir()] if directory.is_dir() else []


def free_slot() -> int:
    taken = {record.get("slot") for record in RECORDS.all()}
    taken |= {
        int(link.removeprefix(VETH_PREFIX))
        for link in existing_links()
        if link.startswith(VETH_PREFIX) and link.removeprefix(VETH_PREFIX).isdigit()
    }
    for slot in SLOTS:
        if slot not in taken:
            return slot
    raise Failure(f"all {len(SLOTS)} host slots of {SUBNET} are taken")


def create_network(name: str, slot: int) -> tuple[str, str]:
    netns, veth = NETNS_PREFIX + name, f"{VETH_PREFIX}{slot}"
    run("ip", "netns", "add", netns)
    # The container's end is made inside its namespace under the name nspawn's own veths have (host0).
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "host0", "netns", netns)
    run("ip", "link", "set", veth, "alias", LINK_ALIAS_PREFIX + name)
    run("ip", "address", "add", f"{gateway_address(slot)}/24", "dev", veth)
    run("ip", "link", "set", veth, "up")
    return netns, veth


def remove_network(netns: str | None, veth: str | None) -> None:
    if netns and netns in existing_netns():
        run("ip", "netns", "delete", netns, check=False)  # takes host0 and so the pair with it
    if veth and veth in existing_links():
        run("ip", "link", "delete", veth, check=False, quiet=True)  # may go with its namespace meanwhile


NAT_RULES = (
    ("nat", "POSTROUTING", "-s", str(SUBNET), "!", "-d", str(SUBNET), "-j", "MASQUERADE"),
    # Accept forwarding explicitly, in case the machine's FORWARD policy is DROP (as with Docker).
    ("filter", "FORWARD", "-s", str(SUBNET), "-j", "ACCEPT"),
    ("filter", "FORWARD", "-d", str(SUBNET), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
)
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
IP_FORWARD_SAVED = HOSTS_DIR / ".ip_forward-before"


def enable_nat() -> None:
    for table, chain, *rule in NAT_RULES:
        tagged = (*rule[:-2], "-m", "comment", "--comment", RULE_COMMENT, *rule[-2:])
        if run("iptables", "-w", "-t", table, "-C", chain, *tagged, check=False, quiet=True).returncode != 0:
            verb = "-A" if table == "nat" else "-I"
            run("iptables", "-w", "-t", table, verb, chain, *tagged)
    if IP_FORWARD.read_text().strip() != "1":
        if not IP_FORWARD_SAVED.exists():
            IP_FORWARD_SAVED.write_text(IP_FORWARD.read_text())
        IP_FORWARD.write_text("1\n")


def disable_nat() -> None:
    """Remove every rule this tool ever added (found by its comment) and give ip_forward back."""
    for table in ("nat", "filter"):
        listing = run("iptables", "-w", "-t", table, "-S", check=False, quiet=True).stdout
        for line in listing.splitlines():
            if line.startswith("-A ") and f"--comment {RULE_COMMENT}" in line:
                run("iptables", "-w", "-t", table, "-D", *line[3:].split(), check=False)
    if IP_FORWARD_SAVED.exists():
        IP_FORWARD.write_text(IP_FORWARD_SAVED.read_text())
        IP_FORWARD_SAVED.unlink()


def machine_nameserver() -> str:
    """The first IPv4 nameserver of this machine: what the hosts use, through NAT, as EC2's resolver."""
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            with contextlib.suppress(ValueError):
                address = ipaddress.ip_address(fields[1])
                if address.version == 4:
                    return str(address)
    raise Failure("/etc/resolv.conf names no IPv4 nameserver")


def dns_for_host(slot: int) -> tuple[str, str | None]:
    """(nameserver for the host, upstream for a forwarder or None).

    A nameserver on the machine's loopback (e.g. systemd-resolved's 127.0.0.53) cannot be reached from a
    host's namespace: then a small forwarder listens on the gateway address and relays to it.
    """
    upstream = machine_nameserver()
    if ipaddress.ip_address(upstream).is_loopback or os.environ.get("SANDBOX_HOSTS_DNS") == "forwarder":
        return gateway_address(slot), upstream
    return upstream, None


def serve_dns_forwarder(listen: str, upstream: str) -> None:
    """Relay DNS over UDP from `listen`:53 to `upstream`:53 (each query on its own socket, in a thread)."""
    import threading

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((listen, 53))

    def relay(query: bytes, client) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as outbound:
            outbound.settimeout(5)
            with contextlib.suppress(OSError):
                outbound.sendto(query, (upstream, 53))
                server.sendto(outbound.recvfrom(65535)[0], client)

    while True:
        query, client = server.recvfrom(65535)
        threading.Thread(target=relay, args=(query, client), daemon=True).start()


def loopback_relay_ports() -> list[int]:
    """Ports of the machine's loopback services the hosts reach through their gateway: the embedded AWS."""
    endpoint = os.environ.get("SANDBOX_AWS_ENDPOINT", "http://127.0.0.1:5000")
    return [int(endpoint.rsplit(":", 1)[1].split("/")[0])]


def serve_loopback_relay(listen: str, port: int) -> None:
    """Relay TCP from `listen`:port to 127.0.0.1:port, so a host reaches the embedded AWS at its gateway.

    The embedded AWS listens on the loopback only (it has no authentication); from inside a host's
    namespace 127.0.0.1 is the host itself, and this relay is the one way through.
    """
    import threading

    def pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def serve(client: socket.socket) -> None:
        with (
            client,
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=10) as upstream,
        ):
            upstream.settimeout(None)
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((listen, port))
    server.listen(64)
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()


# ---------------------------------------------------------------------------------------------------------
# The first boot: quiet, or as busy as Ubuntu's on EC2
# ---------------------------------------------------------------------------------------------------------

FIRST_BOOT_BUSY_VARIABLE = "SANDBOX_HOSTS_FIRST_BOOT_BUSY"
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")  # in the order apt takes them
LOCKS_OUTLAST_CLOUD_INIT = 5  # seconds: unattended-upgrades goes on a little after cloud-init is done

QUIET_USER_DATA: dict = {}  # nothing beyond the image's defaults: sandbox/rootfs/files

# What holds apt's locks on a busy first boot: fcntl (lockf) write locks, as apt and dpkg take them (flock
# would not stop apt), held until cloud-init has finished this boot (or it took a minute longer than it
# should have), and a few seconds more. It calls itself unattended-upgr(ade), so apt's "Could not get lock
# ... It is held by process N (unattended-upgr)" reads as on EC2.
DPKG_LOCK_HOLDER = f"""\
import ctypes, fcntl, os, sys, time
ctypes.CDLL(None).prctl(15, b"unattended-upgr", 0, 0, 0)  # PR_SET_NAME
locks = []
for path in {DPKG_LOCKS!r}:
    locks.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o640))
    fcntl.lockf(locks[-1], fcntl.LOCK_EX)
give_up = time.monotonic() + float(sys.argv[1]) + 60
while not os.path.exists("/var/lib/cloud/instance/boot-finished") and time.monotonic() < give_up:
    time.sleep(0.2)
time.sleep(float(sys.argv[2]))
"""


def first_boot_busy_seconds(environ: Mapping[str, str] = os.environ) -> int:
    """Seconds that cloud-init's final stage keeps running at a host's first boot ($SANDBOX_HOSTS_FIRST_BOOT_BUSY,
    default 0: a quiet first boot)."""
    value = environ.get(FIRST_BOOT_BUSY_VARIABLE, "").strip() or "0"
    if not value.isdigit():
        raise Failure(f"{FIRST_BOOT_BUSY_VARIABLE}={value!r}: a whole number of seconds (0: a quiet first boot)")
    return int(value)


def busy_first_boot_user_data(seconds: int) -> dict:
    """cloud-config that makes an instance's first boot busy for `seconds`, as Ubuntu's is on EC2: cloud-init's
    final stage runs that long (runcmd, once per instance), and a process started at bootcmd, before sshd
    (cloud-init-per: once per instance), holds the dpkg locks until cloud-init has finished and a few
    seconds more, as apt-daily and unattended-upgrades do. systemd-run makes the holder a service of its
    own, so cloud-init does not wait for it."""
    holder = [
        "cloud-init-per",
        "instance",
        "sandbox-first-boot-busy",
        "systemd-run",
        "--unit=sandbox-first-boot-busy",
        # Now, not after basic.target as by default: that waits for cloud-init's own stage, which waits here.
        "--property=DefaultDependencies=no",
        "--description=Holds the dpkg locks on the first boot, as unattended-upgrades does on EC2",
        "/usr/bin/python3",
        "-c",
        DPKG_LOCK_HOLDER,
        str(seconds),
        str(LOCKS_OUTLAST_CLOUD_INIT),
    ]
    return {"bootcmd": [holder], "runcmd": [["sleep", str(seconds)]]}


# ---------------------------------------------------------------------------------------------------------
# Starting and stopping hosts
# ---------------------------------------------------------------------------------------------------------


def write_seed(
    root: Path,
    name: str,
    instance_id: str,
    public_key: str,
    slot: int,
    nameserver: str,
    first_boot_busy: int = 0,
    user_data: str = "",
) -> None:
    """The NoCloud seed: what EC2's metadata service tells an Ubuntu cloud image at first boot, with the
    instance's own user data (`user_data`, a cloud-config) merged in."""
    seed = root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "meta-data").write_text(
        f"instance-id: {instance_id}\nlocal-hostname: {name}\npublic-keys:\n  - {json.dumps(public_key)}\n"
    )
    sandbox_config = busy_first_boot_user_data(first_boot_busy) if first_boot_busy else QUIET_USER_DATA
    (seed / "user-data").write_text(merged_user_data(sandbox_config, user_data))
    # Without a network-config cloud-init writes a DHCP fallback for host0, and there is no DHCP here.
    (seed / "network-config").write_text(
        "version: 2\n"
        "ethernets:\n"
        "  host0:\n"
        f"    addresses: [{host_address(slot)}/24]\n"
        "    routes:\n"
        f"      - {{to: 0.0.0.0/0, via: {gateway_address(slot)}}}\n"
        "    nameservers:\n"
        f"      addresses: [{nameserver}]\n"
    )
    # No resolved/resolvconf inside to turn the nameservers above into resolv.conf; EC2's DHCP does that.
    (root / "etc/resolv.conf").write_text(f"nameserver {nameserver}\n")


def key_installed(record: dict) -> bool:
    """cloud-init installed the instance's key for `ubuntu` (read through the overlay)."""
    authorized_keys = Path(record["merged"]) / "home" / DEFAULT_USER / ".ssh/authorized_keys"
    with contextlib.suppress(OSError):
        return record["public_key"].split()[1] in authorized_keys.read_text()
    return False


def cloud_init_finished(record: dict) -> bool:
    """cloud-init ran all its stages for this instance and installed the key (read through the overlay)."""
    boot_finished = Path(record["merged"]) / "var/lib/cloud/instances" / record["instance_id"] / "boot-finished"
    return boot_finished.exists() and key_installed(record)


def wait_ready(record: dict, login_key: Path | None = None) -> None:
    """Until cloud-init has finished (no more restarts of sshd, the key is in place) and sshd answers (and,
    if asked, `ubuntu` logs in with `login_key`). On a busy first boot, as on EC2, only until the key is in
    place and sshd answers: cloud-init goes on meanwhile."""
    name, address = record["name"], record["address"]
    provisioned = key_installed if record.get("first_boot_busy") else cloud_init_finished

    def ready() -> bool:
        return provisioned(record) and ssh_ready(DEFAULT_USER, address, record.get("ssh_port", 22), login_key)

    waited = seconds_until_booted(record, "systemd-nspawn", ready, console_tail, BOOT_TIMEOUT, interval=0.1)
    if waited is None:
        raise Failure(f"{name}: no SSH on {address} after {BOOT_TIMEOUT:.0f} s; console:\n{console_tail(record)}")
    log(f"{name}: SSH ready at {address} after {waited:.1f} s")


def where(record: dict) -> str:
    return record["address"]


def console_tail(record: dict, lines: int = 30) -> str:
    console = RECORDS.machine_dir(record["name"]) / "console.log"
    with contextlib.suppress(OSError):
        return "\n".join(console.read_text(errors="replace").splitlines()[-lines:])
    return "(no console log)"


def new_record(name: str, suite: str, instance_id: str, public_key: str) -> dict:
    """A host's record before it boots: its root filesystem extracted, a slot of its own."""
    busy = first_boot_busy_seconds()
    lower = lower_dir(suite)
    slot = free_slot()
    directory = RECORDS.machine_dir(name)
    return {
        "name": name,
        "user": DEFAULT_USER,
        "suite": suite,
        "instance_id": instance_id,
        "slot": slot,
        "address": host_address(slot),
        "gateway": gateway_address(slot),
        "public_key": public_key,
        "lower": str(lower),
        "merged": str(directory / "merged"),
        "netns": NETNS_PREFIX + name,
        "veth": f"{VETH_PREFIX}{slot}",
        "first_boot_busy": busy,
    }


def nspawn_command(record: dict) -> list[str]:
    """The systemd-nspawn command line that boots the host: the same at every boot of the instance."""
    name, directory = record["name"], RECORDS.machine_dir(record["name"])
    return [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        f"--machine={name}",
        f"--directory={directory / 'merged'}",
        # No systemd as this machine's PID 1: nspawn must not ask it for a scope unit or registration.
        "--keep-unit",
        "--register=no",
        f"--network-namespace-path=/run/netns/{record['netns']}",
        # The namespace is the host's own, so it may manage it: networkd (and ufw) need CAP_NET_ADMIN.
        "--capability=CAP_NET_ADMIN",
        # The seed wrote resolv.conf; the image keeps its own timezone (UTC), and the journal stays inside.
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=read-only",
    ]


# nspawn mounts all of /proc/sys read-only; "network" leaves /proc/sys/net writable, as in an instance, whose
# network sysctls (roles/host_hardening) are its own: the host has a network namespace of its own, so they
# reach nothing else. The kernel's own keys (kernel.*, fs.*) stay read-only: the machine's kernel is shared.
NSPAWN_ENVIRONMENT = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}

REBOOT_EXIT_STATUS = 133  # systemd-nspawn's exit status when the container's systemd rebooted


def supervise(name: str, command: list[str]) -> int:
    """Run the host's systemd-nspawn `command`, again each time the container reboots; nspawn's exit status.

    This process is the host, as an instance outlives its reboots: the record's pid names it. A reboot inside
    (`systemctl reboot`, `shutdown -r`) ends nspawn with status 133, and nspawn starts again on the same
    overlay, network namespace and cgroup, its console appended to the same log (this process's stdout).
    Any other end (a poweroff inside: 0) ends the host. SIGTERM is passed on to nspawn, which turns it into
    an orderly poweroff of the container, and no boot follows.
    """
    stopping = False
    nspawn: subprocess.Popen | None = None

    def stop(signum: int, frame) -> None:
        nonlocal stopping
        stopping = True
        if nspawn is not None and nspawn.returncode is None:  # not yet reaped, so the PID is still nspawn's
            with contextlib.suppress(ProcessLookupError):
                os.kill(nspawn.pid, signal.SIGTERM)

    terminating = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    for signum in terminating:
        signal.signal(signum, stop)
    move_into_cgroups = cgroup_mover(name)

    def child_setup() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, terminating)
        move_into_cgroups()

    boots = 0
    while True:
        # A SIGTERM between the decision to boot and `nspawn` naming the new process would reach nobody.
        signal.pthread_sigmask(signal.SIG_BLOCK, terminating)
        try:
            if stopping:
                return 0
            nspawn = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                preexec_fn=child_setup,
                env={**os.environ, **NSPAWN_ENVIRONMENT},
            )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, terminating)
        boots += 1
        log(f"{name}: boot {boots}, systemd-nspawn pid {nspawn.pid}")
        status = nspawn.wait()
        if status != REBOOT_EXIT_STATUS or stopping:
            log(f"{name}: systemd-nspawn exited with status {status}; the host is off")
            return status
        log(f"{name}: the container rebooted; booting it again")


def boot(record: dict) -> None:
    """Mount the host's fresh disk, write its seed, wire its network and launch systemd-nspawn under its
    supervisor (which boots it again after a reboot inside)."""
    name, slot = record["name"], record["slot"]
    directory, lower = RECORDS.machine_dir(name), Path(record["lower"])
    for layer in ("upper", "work", "merged"):
        (directory / layer).mkdir()
    run(
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={lower},upperdir={directory / 'upper'},workdir={directory / 'work'}",
        str(directory / "merged"),
    )
    nameserver, upstream = dns_for_host(slot)
    write_seed(
        directory / "merged",
        name,
        record["instance_id"],
        record["public_key"],
        slot,
        nameserver,
        record.get("first_boot_busy", 0),
        record.get("user_data", ""),
    )
    create_network(name, slot)
    enable_nat()
    if upstream:
        with open(directory / "dns-forwarder.log", "w") as forwarder_log:
            forwarder = subprocess.Popen(
                [sys.executable, str(ENTRY_POINT), "dns-forwarder", gateway_address(slot), upstream],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=forwarder_log,
                start_new_session=True,
            )
        record.update(forwarder_pid=forwarder.pid, forwarder_start_time=process_start_time(forwarder.pid))
    relays = []
    for port in loopback_relay_ports():
        with open(directory / f"relay-{port}.log", "w") as relay_log:
            relay = subprocess.Popen(
                [sys.executable, str(ENTRY_POINT), "loopback-relay", gateway_address(slot), str(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=relay_log,
                start_new_session=True,
            )
        relays.append({"port": port, "pid": relay.pid, "start_time": process_start_time(relay.pid)})
    record.update(relays=relays)
    with open(directory / "console.log", "w") as console, open(directory / "supervisor.log", "w") as supervisor_log:
        supervisor = subprocess.Popen(
            [sys.executable, str(ENTRY_POINT), "supervise", name, "--", *nspawn_command(record)],
            stdin=subprocess.DEVNULL,
            stdout=console,  # systemd-nspawn, every boot of it, writes the container's console here
            stderr=supervisor_log,
            start_new_session=True,
        )
    record.update(pid=supervisor.pid, pid_start_time=process_start_time(supervisor.pid))
    RECORDS.write(record)
    log(f"{name}: booting {record['suite']} at {record['address']} (supervisor pid {supervisor.pid})")


def teardown(record: dict) -> None:
    """Power off one host (gracefully if it still runs) and remove everything it had."""
    name = record["name"]
    directory = RECORDS.machine_dir(name)
    merged = Path(record.get("merged") or directory / "merged")
    if is_running(record):
        # The supervisor passes SIGTERM on to nspawn, which turns it into SIGRTMIN+3 for the container's
        # systemd: an orderly poweroff.
        kill_pids([record["pid"]], signal.SIGTERM)
        if not wait_until(lambda: not is_running(record), STOP_TIMEOUT):
            log(f"{name}: no orderly poweroff within {STOP_TIMEOUT:.0f} s, killing it")
    if process_alive(record.get("forwarder_pid"), record.get("forwarder_start_time")):
        kill_pids([record["forwarder_pid"]])
    for relay in record.get("relays", []):
        if process_alive(relay["pid"], relay["start_time"]):
            kill_pids([relay["pid"]])

    def leftovers() -> set[int]:
        """The supervisor and its nspawn, and a container whose nspawn was killed (its PID 1 and all)."""
        found = set(nspawn_pids_for(directory)) | set(pids_rooted_under(merged))
        found |= set(pids_in_netns(record.get("netns") or NETNS_PREFIX + name))
        found |= set(pids_in_cgroups(name))
        if record.get("pid") and process_alive(record["pid"], record.get("pid_start_time")):
            found.add(record["pid"])
        return found

    kill_until_gone(leftovers)
    unmount_all_under(directory)
    remove_network(record.get("netns") or NETNS_PREFIX + name, record.get("veth"))
    remove_cgroups(name)
    remove_tree(directory)


def live_host_names() -> set[str]:
    """Hosts whose systemd-nspawn or supervisor runs (the supervisor alone while a host reboots), machine-wide:
    also those of another SANDBOX_STATE_DIR, which share the namespace and link names, the subnet and the NAT
    rules with this one."""
    names = set()
    marker = f"--network-namespace-path=/run/netns/{NETNS_PREFIX}".encode()
    for pid, argv in each_process(command_line):
        if runs_nspawn(argv) and process_start_time(pid):
            names |= {arg[len(marker) :].decode() for arg in argv if arg.startswith(marker)}
    return names


def link_owner(link: str) -> str | None:
    with contextlib.suppress(OSError):
        return Path(f"/sys/class/net/{link}/ifalias").read_text().strip().removeprefix(LINK_ALIAS_PREFIX)
    return None


def reap_stale() -> None:
    """Remove what killed runs left behind, without touching hosts that run."""
    running = tear_down_stopped(RECORDS, teardown)
    live = live_host_names() | {record["name"] for record in running}
    for netns in existing_netns():
        if netns.startswith(NETNS_PREFIX) and netns.removeprefix(NETNS_PREFIX) not in live:
            kill_pids(pids_in_netns(netns))
            remove_network(netns, None)
    for link in existing_links():
        if link.startswith(VETH_PREFIX) and link_owner(link) not in live:
            remove_network(None, link)
    for group in cgroups_of(None):
        for cgroup in group.iterdir() if group.is_dir() else []:
            if cgroup.is_dir() and cgroup.name not in live:
                kill_pids(pids_in_cgroups(cgroup.name))
                remove_cgroups(cgroup.name)
    remove_abandoned_builds()
    if not live:
        remove_cgroups(None)
        disable_nat()


def after_stop() -> None:
    """NAT, ip_forward and the shared cgroup go with the last host, also of another SANDBOX_STATE_DIR."""
    if not live_host_names():
        remove_cgroups(None)
        disable_nat()


def after_cleanup(stale_only: bool) -> None:
    """Nothing beyond reap_stale, which takes NAT, forwarding and cgroups unless hosts of another state dir
    still run."""


# ---------------------------------------------------------------------------------------------------------
# Command line: the verbs of sandbox/hosts alone
# ---------------------------------------------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The supervisor and the relays each host's `start` launches as processes of their own (not for people
    to run)."""
    forwarder_parser = commands.add_parser("dns-forwarder")  # started by `start` when needed
    forwarder_parser.add_argument("listen")
    forwarder_parser.add_argument("upstream")
    relay_parser = commands.add_parser("loopback-relay")  # started by `start` for each host
    relay_parser.add_argument("listen")
    relay_parser.add_argument("port", type=int)
    supervisor_parser = commands.add_parser("supervise")  # started by `start`: the host's process
    supervisor_parser.add_argument("name")
    supervisor_parser.add_argument("nspawn_command", nargs=argparse.REMAINDER, help="-- systemd-nspawn ...")


def run_command(arguments: argparse.Namespace) -> int:
    if arguments.command == "dns-forwarder":
        serve_dns_forwarder(arguments.listen, arguments.upstream)
    elif arguments.command == "loopback-relay":
        serve_loopback_relay(arguments.listen, arguments.port)
    elif arguments.command == "supervise":
        command = arguments.nspawn_command
        return supervise(arguments.name, command[1:] if command[:1] == ["--"] else command)
    return 0
