"""SSH to the machines: is sshd up, does a login work. One set of client options, which the tests use too.

The machines are fresh instances with new host keys at every boot, so nothing is pinned; batch mode,
because a prompt would hang a tool or a test.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from .shell import run

CLIENT_OPTIONS = ("BatchMode=yes", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR")


def ssh_command(user: str, address: str, port: int, key: Path, command: str, connect_timeout: float) -> list[str]:
    """The ssh command line that runs `command` as `user` on a machine, logging in with the private `key`.

    `-n`: ssh makes its stdin non-blocking for the session and puts it back only when it exits, so one
    killed on a timeout leaves the caller's stdin non-blocking, and every ansible started after it with
    that stdin refuses to run ("Ansible requires blocking IO"). No command here reads stdin.
    """
    options = [*CLIENT_OPTIONS, f"ConnectTimeout={connect_timeout:g}"]
    return [
        "ssh",
        "-n",
        *(word for option in options for word in ("-o", option)),
        "-i",
        str(key),
        "-p",
        str(port),
        f"{user}@{address}",
        command,
    ]


def ssh_answers(address: str, port: int = 22, connect_timeout: float = 1, read_timeout: float = 2) -> bool:
    """sshd's banner on address:port (a forwarded port accepts the connection before the guest listens)."""
    with (
        contextlib.suppress(OSError),
        socket.create_connection((address, port), timeout=connect_timeout) as connection,
    ):
        connection.settimeout(read_timeout)
        return connection.recv(64).startswith(b"SSH-")
    return False


def ssh_ready(
    user: str,
    address: str,
    port: int,
    login_key: Path | None,
    connect_timeout: float = 1,
    read_timeout: float = 2,
) -> bool:
    """sshd answers on address:port and, given a private key, `user` logs in with it."""
    return ssh_answers(address, port, connect_timeout, read_timeout) and (
        login_key is None or login_works(user, address, port, login_key)
    )


def login_works(user: str, address: str, port: int, private_key: Path) -> bool:
    """A login with that key succeeds: sshd answers, and cloud-init has installed the key for `user`."""
    command = ssh_command(user, address, port, private_key, "true", connect_timeout=10)
    return run(*command, check=False, quiet=True, timeout=60).returncode == 0
