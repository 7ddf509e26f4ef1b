"""File locks between runs of the tools: one start/stop/cleanup at a time, one build of an image at a time."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path` for the block. With wait=False, yield False at once (and hold
    nothing) if another process holds it, e.g. to spare the build directory of a build going on now."""
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
