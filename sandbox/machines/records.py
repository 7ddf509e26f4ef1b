"""Where the machines' state lives, and each machine's record: what it is, and the processes that are it.

State lives in $SANDBOX_STATE_DIR (default: the repository's .sandbox/): cache/ holds the images, and each
kind of machine has a directory of its own (hosts/, vms/) with one directory per machine, its record in
host.json and its console in console.log. Tests, the sandbox inventory and the Ansible roles read these
records too, and so does the embedded AWS (``machine_of_instance``): its load balancers send traffic to
an instance's machine, and GetConsoleOutput answers with the machine's console.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from .locking import locked
from .processes import process_alive

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO_ROOT / ".sandbox").resolve()
CACHE_DIR = STATE_DIR / "cache"
DEFAULT_USER = "ubuntu"
MACHINE_KINDS = ("hosts", "vms")  # the directories of sandbox/hosts' and sandbox/vms' machines in the state


def is_running(record: dict) -> bool:
    """The machine's main process still runs: the very process the record names (`pid`, `pid_start_time`).
    That is qemu for a VM; for a host, the supervisor that runs its systemd-nspawn through reboots."""
    return process_alive(record.get("pid"), record.get("pid_start_time"))


def public_view(record: dict, fields: tuple[str, ...]) -> dict:
    """What `start` and `list` print of a machine: these fields of its record, in this order."""
    return {field: DEFAULT_USER if field == "user" else record.get(field) for field in fields}


def machine_of_instance(instance_id: str, state_dir: Path = STATE_DIR) -> tuple[Path, dict] | None:
    """The machine booted for an EC2 instance, of either kind (named <project>-<instance id>, as the machines
    role names it): its directory and record; None while no machine of that instance has a record."""
    for kind in MACHINE_KINDS:
        for path in sorted(state_dir.glob(f"{kind}/*-{instance_id}/host.json")):
            try:
                return path.parent, json.loads(path.read_text())
            except (OSError, ValueError):
                continue
    return None


class Records:
    """The records of one kind of machine: <directory>/<name>/host.json, one directory per machine."""

    def __init__(self, directory: Path):
        self.directory = directory

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One start/stop/cleanup at a time: what all machines of a kind share (slots, ports, NAT) stays
        consistent."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with locked(self.directory / ".lock"):
            yield

    def machine_dir(self, name: str) -> Path:
        return self.directory / name

    def read(self, name: str) -> dict | None:
        try:
            return json.loads((self.machine_dir(name) / "host.json").read_text())
        except (OSError, ValueError):
            return None

    def write(self, record: dict) -> None:
        path = self.machine_dir(record["name"]) / "host.json"
        path.with_suffix(".tmp").write_text(json.dumps(record, indent=2) + "\n")
        path.with_suffix(".tmp").rename(path)

    def names(self) -> list[str]:
        """Every machine that has a directory, recorded or not (what `stop --all` stops)."""
        return [entry.name for entry in self.directory.iterdir() if entry.is_dir()] if self.directory.is_dir() else []

    def all(self) -> list[dict]:
        if not self.directory.is_dir():
            return []
        records = (self.read(entry.name) for entry in sorted(self.directory.iterdir()) if entry.is_dir())
        return [record for record in records if record]

    def running(self) -> list[dict]:
        return [record for record in self.all() if is_running(record)]
