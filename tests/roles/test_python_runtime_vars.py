"""roles/python_runtime chooses the right interpreter for every release, also those the sandbox cannot
boot (Ubuntu): the role's own selection (tasks/select.yml) runs with each release's facts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from playbook_on_localhost import run_on_localhost

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).with_name("select_python_runtime.yml")

SYSTEM_PYTHON = ["python3", "python3-venv"]

# (distribution, version, codename) -> (packages, interpreter, major.minor)
RELEASES = {
    ("Ubuntu", "18.04", "bionic"): (["python3.8", "python3.8-venv", "python3-distutils"], "/usr/bin/python3.8", "3.8"),
    ("Ubuntu", "20.04", "focal"): (SYSTEM_PYTHON, "/usr/bin/python3", "3.8"),
    ("Ubuntu", "22.04", "jammy"): (SYSTEM_PYTHON, "/usr/bin/python3", "3.10"),
    ("Ubuntu", "24.04", "noble"): (SYSTEM_PYTHON, "/usr/bin/python3", "3.12"),
    ("Debian", "11", "bullseye"): (SYSTEM_PYTHON, "/usr/bin/python3", "3.9"),
    ("Debian", "12", "bookworm"): (SYSTEM_PYTHON, "/usr/bin/python3", "3.11"),
    ("Debian", "13", "trixie"): (SYSTEM_PYTHON, "/usr/bin/python3", "3.13"),
}


def select(tmp_path: Path, distribution: str, version: str, codename: str) -> subprocess.CompletedProcess:
    output = tmp_path / "selection.json"
    facts = {
        "ansible_distribution": distribution,
        "ansible_distribution_version": version,
        "ansible_distribution_major_version": version.split(".")[0],
        "ansible_distribution_release": codename,
        "ansible_os_family": "Debian",
        "selection_output": str(output),
    }
    return run_on_localhost(PLAYBOOK, facts)


@pytest.mark.parametrize(("release", "expected"), list(RELEASES.items()), ids=[f"{d}-{v}" for d, v, _ in RELEASES])
def test_each_release_gets_its_interpreter(tmp_path, release, expected):
    result = select(tmp_path, *release)
    assert result.returncode == 0, result.stdout + result.stderr
    packages, interpreter, version = expected
    assert json.loads((tmp_path / "selection.json").read_text()) == {
        "packages": packages,
        "interpreter": interpreter,
        "version": version,
    }


def test_an_unknown_release_fails_with_a_clear_message(tmp_path):
    result = select(tmp_path, "Ubuntu", "16.04", "xenial")
    assert result.returncode != 0
    assert "xenial" in result.stdout
    assert "add its codename" in result.stdout
