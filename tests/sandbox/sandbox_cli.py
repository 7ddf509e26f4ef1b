"""Driving sandbox/hosts and sandbox/vms from tests: the two tools share one CLI and one record format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sandbox"))  # the tools' own package, for its SSH
from machines.ssh import ssh_command  # noqa: E402


class SandboxTool:
    def __init__(self, executable: Path, records: Path, timeout: float):
        self.executable = executable
        self.records = records
        self.timeout = timeout

    def __call__(
        self, *arguments: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.executable), *arguments], capture_output=True, text=True, timeout=timeout or self.timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.executable.name} {' '.join(arguments)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def start(self, name: str, public_key: Path, *extra: str) -> dict:
        lines = self("start", name, "--public-key", str(public_key), *extra).stdout.splitlines()
        assert len(lines) == 1, f"start must print exactly one line on stdout, printed {lines}"
        return json.loads(lines[0])

    def record_of(self, name: str) -> dict:
        return json.loads((self.records / name / "host.json").read_text())


def ssh(machine: dict, key: Path, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command as the machine's user, logging in with `key` (port 22 unless the machine says), with the
    SSH client options the tools use themselves."""
    arguments = ssh_command(machine["user"], machine["address"], machine.get("port", 22), key, command, 20)
    return subprocess.run(arguments, capture_output=True, text=True, timeout=timeout)
