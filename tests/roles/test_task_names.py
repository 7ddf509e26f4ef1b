"""Every play, block and task name of the project reads on one line of an operator's terminal: fewer than 80
characters as written (a `{{ }}` counts as written, whatever it renders to)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LIMIT = 80
# Keys that make a named mapping a play or a block; every module is called by its FQCN (ansible-lint's fqcn).
NAMED_KEYS = {"hosts", "block", "import_playbook"}


def yaml_files() -> list[Path]:
    roles = [p for p in (REPO / "roles").glob("*/*/*.yml") if p.parent.name in ("tasks", "handlers")]
    return sorted(
        [REPO / "site.yml", *roles, *(REPO / "playbooks").rglob("*.yml"), *(REPO / "molecule").glob("*/*.yml")]
    )


def names(node) -> list[str]:
    """The names of the plays, blocks and tasks in a parsed file, nested ones included."""
    found = []
    if isinstance(node, list):
        for item in node:
            named = isinstance(item, dict) and isinstance(item.get("name"), str)
            if named and any("." in key or key in NAMED_KEYS for key in item):
                found.append(item["name"])
            found += names(item)
    elif isinstance(node, dict):
        for value in node.values():
            found += names(value)
    return found


def test_the_scan_finds_the_project_s_tasks():
    scanned = {path.relative_to(REPO).as_posix(): names(yaml.safe_load(path.read_text())) for path in yaml_files()}
    assert "Restart the API service" in scanned["roles/api_service/handlers/main.yml"]
    assert "Configure the API instances" in scanned["playbooks/configure.yml"]
    # A block's tasks are found as well as the block.
    assert "Install AppArmor's tools" in scanned["roles/api_service/tasks/service.yml"]
    assert sum(map(len, scanned.values())) > 500


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_names_are_shorter_than_80_characters(path):
    long = [name for name in names(yaml.safe_load(path.read_text())) if len(name) >= LIMIT]
    assert long == [], f"{len(long)} name(s) of {LIMIT} characters or more"
