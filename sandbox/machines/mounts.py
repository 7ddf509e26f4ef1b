"""Mounts below the tools' own directories: a chroot's /proc while building, a host's overlay."""

from __future__ import annotations

import shutil
from pathlib import Path

from .shell import run


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory`, deepest first (the order to unmount them in)."""
    found = []
    prefix = str(directory).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point == str(directory) or mount_point.startswith(prefix):
            found.append(Path(mount_point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all_under(directory: Path) -> None:
    for mount_point in mounts_under(directory):
        if run("umount", str(mount_point), check=False, quiet=True).returncode != 0:
            run("umount", "--lazy", str(mount_point), check=False)


def remove_tree(directory: Path) -> None:
    """rm -rf that never follows a mount into whatever is mounted below (e.g. a chroot's /proc)."""
    unmount_all_under(directory)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        if directory.exists():
            run("rm", "-rf", "--one-file-system", str(directory), check=False)
