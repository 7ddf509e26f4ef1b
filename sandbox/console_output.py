"""EC2's GetConsoleOutput with each sandbox machine's real console, as EC2 answers it.

moto answers GetConsoleOutput with one fixed Xen boot log, the same for every instance, with no SSH host
keys in it. ``ConsoleOutput`` wraps moto's WSGI app in the server's own process. It lets moto answer first,
so an unknown instance still gets moto's InvalidInstanceID.NotFound and the answer keeps moto's shape
(``instanceId``, ``timestamp``, ``output``). When the instance has a sandbox machine (a host of
sandbox/hosts or a VM of sandbox/vms, recorded under ``<state>/hosts/*-<id>/`` or ``<state>/vms/*-<id>/``,
found by ``machines.records.machine_of_instance``), it puts that machine's console in instead:

- ``output``: the last 64 KiB of ``console.log`` (EC2 returns at most that much), base64-encoded; no
  ``output`` element at all while the log is empty or missing, as EC2 answers before there is any;
- ``timestamp``: when the log last changed (EC2: the time the output was last updated).

The console is what the machine really wrote on it, cloud-init's ``-----BEGIN SSH HOST KEY KEYS-----``
block with the host keys sshd serves included (cc_keys_to_console, as on EC2): for a host,
``systemd-nspawn --console=read-only``'s output, which the container's systemd and cloud-init write to
/dev/console; for a VM, the serial port (ttyS0, qemu ``-serial file:``). Instances without a machine keep
moto's answer. ``Latest`` is accepted and ignored (both are the tail of one log here). The unkind mode,
outside this layer, withholds the output for ``console_delay`` seconds after launch (aws_realism.py).
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from machines.records import STATE_DIR, machine_of_instance
from wsgi_layers import credential_scope, pass_through, read_body

CONSOLE_LIMIT = 64 * 1024  # bytes: EC2 returns at most the last 64 KB of an instance's console output


def encoded_tail(console: bytes, limit: int = CONSOLE_LIMIT) -> str:
    """The last `limit` bytes of a console, base64-encoded as EC2's ``output`` element holds them."""
    return base64.b64encode(console[-limit:]).decode("ascii")


def with_console(body: bytes, console: bytes, updated: datetime) -> bytes:
    """moto's GetConsoleOutputResponse with the machine's console as ``output`` (none if the console is
    empty) and its last change as ``timestamp``; everything else as moto wrote it."""
    root = ET.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    for element in root.findall(f"{ns}output"):
        root.remove(element)
    timestamp = root.find(f"{ns}timestamp")
    if timestamp is None:
        timestamp = ET.SubElement(root, f"{ns}timestamp")
    timestamp.text = updated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if console:
        output = ET.Element(f"{ns}output")
        output.text = encoded_tail(console)
        root.insert(list(root).index(timestamp) + 1, output)  # where moto and EC2 put it
    text = ET.tostring(root, encoding="unicode", default_namespace=ns[1:-1] or None)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()


def read_console(directory: Path) -> tuple[bytes, datetime]:
    """A machine's console log (empty if it has none yet) and when it last changed."""
    path = directory / "console.log"
    try:
        with open(path, "rb") as log:
            updated = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            size = log.seek(0, 2)
            log.seek(max(0, size - CONSOLE_LIMIT))
            return log.read(), updated
    except OSError:
        return b"", datetime.now(UTC)


class ConsoleOutput:
    """Wraps moto's WSGI app; answers GetConsoleOutput from the sandbox machines' console logs."""

    def __init__(self, app: Callable, state_dir: Path | None = None):
        self.app = app
        self.state_dir = state_dir or STATE_DIR

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        _region, service = credential_scope(environ)
        if service != "ec2":
            return self.app(environ, start_response)
        params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        params.update({k: v[0] for k, v in parse_qs(read_body(environ).decode(errors="replace")).items()})
        if params.get("Action") != "GetConsoleOutput" or not params.get("InstanceId"):
            return self.app(environ, start_response)
        instance_id = params["InstanceId"]

        def after(status: int, body: bytes) -> bytes | None:
            if status != 200:
                return None  # moto's error (an unknown instance) stands
            found = machine_of_instance(instance_id, self.state_dir)
            if found is None:
                return None  # no machine: moto's answer stands
            console, updated = read_console(found[0])
            return with_console(body, console, updated)

        return pass_through(self.app, environ, start_response, after)
