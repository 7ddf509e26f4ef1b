"""Processes the tools start and must find again: a PID alone may have been reused since it was recorded."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a live process (None if gone or a zombie): tells a PID reused apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def process_alive(pid: int | None, start_time: str | None) -> bool:
    return bool(pid) and process_start_time(pid) is not None and process_start_time(pid) == start_time


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def kill_until_gone(leftovers: Callable[[], set[int]], rounds: int = 50) -> None:
    """SIGKILL whatever `leftovers()` finds until it finds nothing (at most `rounds` times): a dying
    container or VM may still have processes, or start new ones, between two looks."""
    for _ in range(rounds):
        pids = leftovers()
        if not pids:
            break
        kill_pids(sorted(pids))
        time.sleep(0.1)


def each_process(read: Callable[[Path], T]) -> Iterator[tuple[int, T]]:
    """(PID, what `read` makes of its /proc directory) for every process; one that ends meanwhile, or whose
    entries may not be read, is passed over."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                value = read(entry)
            except OSError:
                continue
            yield int(entry.name), value


def command_line(entry: Path) -> list[bytes]:
    """A process's argv, from its /proc directory."""
    return (entry / "cmdline").read_bytes().split(b"\0")
