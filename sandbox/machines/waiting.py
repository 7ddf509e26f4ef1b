"""Waiting for machines: how long a boot may take, and polling a condition until then."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

BOOT_TIMEOUT_VARIABLE = "SANDBOX_BOOT_TIMEOUT"


def boot_timeout(legacy_variable: str, default: float, environ: Mapping[str, str] = os.environ) -> float:
    """Seconds a boot may take until the machine is ready: SANDBOX_BOOT_TIMEOUT for either tool, else the
    tool's own older variable (SANDBOX_HOSTS_BOOT_TIMEOUT, SANDBOX_VM_BOOT_TIMEOUT), else its default."""
    return float(environ.get(BOOT_TIMEOUT_VARIABLE) or environ.get(legacy_variable) or default)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def seconds_until_ready(
    ready: Callable[[], bool], check_alive: Callable[[], None], timeout: float, interval: float
) -> float | None:
    """Seconds it took until `ready()` held, or None once `timeout` passed. `check_alive` raises when the
    machine's process has ended meanwhile, so a failed boot is reported at once rather than at the timeout."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        check_alive()
        if ready():
            return time.monotonic() - started
        time.sleep(interval)
    return None
