"""Starting and stopping machines, alike for both backends: one at a time under the kind's lock, a killed
start cleaned up by the next, and every trace of a stopped machine removed."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .debian import DEFAULT_SUITE
from .records import Records, is_running
from .shell import Failure, log
from .waiting import seconds_until_ready


class Backend(Protocol):
    """What a backend module (nspawn, qemu) offers the lifecycle and the command line."""

    PROGRAM: str  # the tool's path in the repository, e.g. "sandbox/hosts": argparse's prog, the log's prefix
    NOUN: str  # what the tool calls one machine: "host", "VM"
    IMAGE_NOUN: str  # what `image` builds
    IMAGE_ALIASES: tuple[str, ...]  # older names of the `image` verb
    PUBLIC_FIELDS: tuple[str, ...]  # what `start` and `list` print of a record
    ROOT_REASON: str  # why the verbs that change the machine need root
    TOOLS: tuple[str, ...]  # commands those verbs need
    DEPS_SCRIPT: str  # what installs them
    RECORDS: Records
    __doc__: str | None

    def image(self, suite: str) -> Path:
        """Build the suite's cached image (or reuse it); its path."""

    def new_record(self, name: str, suite: str, instance_id: str, public_key: str) -> dict:
        """A machine's record before it boots: its image ready, nothing made for it yet."""

    def boot(self, record: dict) -> None:
        """Make what the machine needs and launch its process; the record gets the process's identity."""

    def wait_ready(self, record: dict, login_key: Path | None) -> None:
        """Until cloud-init has finished and sshd answers (and a login with `login_key` works, if given)."""

    def where(self, record: dict) -> str:
        """Where SSH reaches the machine, for the log."""

    def teardown(self, record: dict) -> None:
        """Power the machine off and remove everything it had."""

    def reap_stale(self) -> None:
        """Remove what killed runs left behind, without touching machines that run."""

    def after_stop(self) -> None:
        """Release what all machines share once `stop` is done (e.g. NAT, when the last one went)."""

    def after_cleanup(self, stale_only: bool) -> None:
        """What `cleanup` removes beyond every machine's own traces and reap_stale's."""

    def add_commands(self, commands: argparse._SubParsersAction) -> None:
        """The backend's verbs beyond the shared ones."""

    def run_command(self, arguments: argparse.Namespace) -> int:
        """Run one of those verbs."""


def read_public_key(path: Path) -> str:
    public_key = path.read_text().strip()
    if not re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", public_key) or "\n" in public_key:
        raise Failure(f"{path} does not hold one OpenSSH public key")
    return public_key


def start(
    backend: Backend,
    name: str,
    public_key_path: Path,
    suite: str | None,
    instance_id: str | None,
    login_key: Path | None = None,
    ssh_port: int = 22,
    user_data: str = "",
) -> dict:
    """Boot a machine and wait until it is ready; one that runs already is only waited for. `user_data`
    is the cloud-config the instance was launched with; `ssh_port` is where its sshd listens then."""
    public_key = read_public_key(public_key_path)
    records = backend.RECORDS
    with records.locked():
        existing = records.read(name)
        if existing and is_running(existing):
            if suite and suite != existing["suite"]:
                raise Failure(f"{name} already runs {existing['suite']}; stop it first to start it as {suite}")
            backend.wait_ready(existing, login_key)
            log(f"{name} already runs at {backend.where(existing)}")
            return existing
        backend.reap_stale()
        record = backend.new_record(name, suite or DEFAULT_SUITE, instance_id or name, public_key)
        record.update(ssh_port=ssh_port, user_data=user_data)
        records.machine_dir(name).mkdir(parents=True)
        records.write(record)  # before anything is created, so a killed start can be cleaned up
        try:
            backend.boot(record)
        except BaseException:
            log(f"{name}: start failed, removing what it made")
            backend.teardown(records.read(name) or record)
            raise
    try:
        backend.wait_ready(record, login_key)  # outside the lock: other machines may start or stop meanwhile
    except BaseException:
        with records.locked():
            if records.read(name) == record:
                log(f"{name}: start failed, removing what it made")
                backend.teardown(record)
        raise
    return record


def seconds_until_booted(
    record: dict,
    process: str,
    ready: Callable[[], bool],
    console_tail: Callable[[dict], str],
    timeout: float,
    interval: float,
) -> float | None:
    """Seconds until `ready()` held, None once `timeout` passed; a Failure, with the console's last lines,
    as soon as the machine's `process` (systemd-nspawn, qemu) has ended."""

    def check_alive() -> None:
        if not is_running(record):
            raise Failure(f"{record['name']}: {process} exited; console:\n{console_tail(record)}")

    return seconds_until_ready(ready, check_alive, timeout, interval)


def tear_down_stopped(records: Records, teardown: Callable[[dict], None]) -> list[dict]:
    """Tear down every machine whose process has ended, and every directory that has no record (a start
    killed early); return the records of the machines that run."""
    running = records.running()
    for record in records.all():
        if record not in running:
            log(f"{record['name']}: removing what a stopped or killed run left behind")
            teardown(record)
    for entry in records.directory.iterdir() if records.directory.is_dir() else []:
        if entry.is_dir() and not (entry / "host.json").exists():
            teardown({"name": entry.name})
    return running


def stop(backend: Backend, names: list[str]) -> None:
    records = backend.RECORDS
    with records.locked():
        for name in names:
            record = records.read(name) or ({"name": name} if records.machine_dir(name).exists() else None)
            if record is None:
                log(f"{name} is not running")
                continue
            log(f"{name}: stopping")
            backend.teardown(record)
        backend.after_stop()


def cleanup(backend: Backend, stale_only: bool) -> None:
    """Stop every machine and remove every trace, also of killed runs; with stale_only, only those traces:
    machines that run stay."""
    with backend.RECORDS.locked():
        if not stale_only:
            for record in backend.RECORDS.all():
                backend.teardown(record)
        backend.reap_stale()
        backend.after_cleanup(stale_only)
