"""Debian, which both images are built from: its releases, its archive, the recipes' package lists, and
the debootstrap and apt stage that starts every build."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path

from .mounts import remove_tree, unmount_all_under
from .shell import Failure, log, run

SUITES = ("bookworm", "bullseye", "trixie")
DEFAULT_SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"


def read_package_list(path: Path, suite: str) -> list[str]:
    """Packages of a recipe: one or more a line, `#` comments, `suite: S pkg…` for one suite only."""
    packages = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("suite:"):
            only_for, *names = line.removeprefix("suite:").split()
            if only_for == suite:
                packages.extend(names)
        else:
            packages.extend(line.split())
    return packages


def sources_list(suite: str) -> str:
    return (
        f"deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\ndeb {SECURITY_MIRROR} {suite}-security main\n"
    )


def recipe_hash(
    header: str, packages: list[str], suite: str, functions: tuple[Callable, ...], files: list[Path], recipe_dir: Path
) -> str:
    """12 hex digits that change with whatever makes an image: the packages, the archive, the code that
    customises the tree (`functions`) and the recipe's files. A cached image is rebuilt exactly then."""
    digest = hashlib.sha256()
    digest.update(header.encode())
    digest.update(("\n".join(packages) + "\n").encode())
    digest.update(sources_list(suite).encode())
    for function in functions:
        digest.update(inspect.getsource(function).encode())
    for path in files:
        digest.update(f"{path.relative_to(recipe_dir)}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def bootstrap(root: Path, suite: str, packages: list[str], in_chroot: Callable[[], None] | None = None) -> None:
    """A minimal Debian tree at `root` with `packages` installed, no service started. `in_chroot` runs
    while the chroot still has /proc and /sys (e.g. to make an initramfs)."""
    # Two stages: debootstrap's own resolver cannot satisfy virtual packages (cloud-init's
    # python3-cryptography needs python3-cffi-backend-api-*), apt inside the chroot can.
    for attempt in (1, 2):  # the archive over plain HTTP has its bad seconds
        try:
            run("debootstrap", "--variant=minbase", suite, str(root), MIRROR)
            break
        except Failure as failure:
            if attempt == 2:
                raise
            log(f"debootstrap failed, trying once more: {str(failure)[-300:]}")
            remove_tree(root)
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\n# No services start while building.\nexit 101\n")
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    run("mount", "-t", "proc", "proc", str(root / "proc"))
    run("mount", "-t", "sysfs", "sysfs", str(root / "sys"))
    try:
        environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        run("chroot", str(root), "apt-get", "update", env=environment)
        run("chroot", str(root), "apt-get", "install", "-y", "--no-install-recommends", *packages, env=environment)
        run("chroot", str(root), "apt-get", "clean", env=environment)
        if in_chroot:
            in_chroot()
    finally:
        unmount_all_under(root)
    (root / "usr/sbin/policy-rc.d").unlink()
