"""Commands run for the tools, their failures, and the one-line log both tools write to stderr."""

from __future__ import annotations

import subprocess
import sys

_program = "sandbox"


def set_program(name: str) -> None:
    """Name the tool in every log line (`sandbox/hosts: ...`), as its users and tests read it."""
    global _program
    _program = name


def log(message: str) -> None:
    print(f"{_program}: {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    """An error to report in one line, without a traceback."""


def run(*command: str, check: bool = True, quiet: bool = False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, text=True, capture_output=True, **kwargs)
    if check and result.returncode != 0:
        output = (result.stdout.strip() + "\n" + result.stderr.strip()).strip()[-3000:]
        raise Failure(f"{' '.join(command)} failed ({result.returncode}):\n{output}")
    if not quiet and result.returncode != 0 and result.stderr.strip():
        log(f"{command[0]}: {result.stderr.strip()[-500:]}")
    return result
