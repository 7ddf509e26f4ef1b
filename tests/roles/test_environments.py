"""The environments (inventory/staging, inventory/production, any folder with group_vars/all/environment.yml)
share inventory/aws's operator defaults and derived values, and their own values win over them: read as a
run reads them, without AWS (the aws_ec2 source is skipped, as `make operator-policy` skips it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = REPO / "inventory"
SHARED = INVENTORIES / "aws" / "group_vars"
ANSIBLE = Path(sys.executable).with_name("ansible")

ENVIRONMENTS = sorted(path.parent.parent.parent.name for path in INVENTORIES.glob("*/group_vars/all/environment.yml"))

# Shared values with nothing to render, as an environment that does not set them gets them.
SHARED_DEFAULTS = ("api_port", "instance_type", "media_public_prefix", "node_exporter_port", "ssh_host_key_tag")


class VaultValue(str):
    """A `!vault` value as it stands in the file, encrypted."""


class VaultLoader(yaml.SafeLoader):
    pass


VaultLoader.add_constructor("!vault", lambda loader, node: VaultValue(loader.construct_scalar(node)))


def read_yaml(path: Path):
    return yaml.load(path.read_text(), Loader=VaultLoader)


def own_values(environment: str) -> dict:
    return read_yaml(INVENTORIES / environment / "group_vars" / "all" / "environment.yml")


def resolve(environment: str, names) -> dict:
    """The variables as a run on this inventory gets them on the controller (implicit localhost), rendered."""
    expression = "{{ {" + ", ".join(f"'{name}': {name}" for name in names) + "} }}"
    done = subprocess.run(
        [
            str(ANSIBLE),
            "localhost",
            "-i",
            str(INVENTORIES / environment),
            "-m",
            "ansible.builtin.debug",
            "-a",
            "var=environment_check",
            "-e",
            json.dumps({"environment_check": expression}),
        ],
        cwd=REPO,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_INVENTORY_IGNORE_REGEX": r"aws_ec2\.yml$",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # ansible.cfg's timer callback prints its line after the JSON document.
    result, _ = json.JSONDecoder().raw_decode(done.stdout)
    return result["plays"][0]["tasks"][0]["hosts"]["localhost"]["environment_check"]


def test_staging_and_production_are_environments():
    assert {"staging", "production"} <= set(ENVIRONMENTS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_environments_own_values_win_over_the_shared_defaults(environment):
    own = own_values(environment)
    shared = read_yaml(SHARED / "all" / "operator.yml")
    assert own["project_name"] != shared["project_name"]

    not_set = [name for name in SHARED_DEFAULTS if name not in own]
    assert not_set

    resolved = resolve(environment, [*own, *not_set, "aws_resource_names", "stack_secret_parameters"])

    assert {name: resolved[name] for name in own} == own
    shared_values = {**shared, **read_yaml(SHARED / "all" / "derived.yml")}
    assert {name: resolved[name] for name in not_set} == {name: shared_values[name] for name in not_set}
    # The shared derived values follow the environment's project.
    project = own["project_name"]
    assert resolved["aws_resource_names"]["key_pair"] == project
    assert resolved["aws_resource_names"]["load_balancer"] == f"{project}-api"
    assert resolved["stack_secret_parameters"]["api_write_token"] == f"/{project}/api/write-token"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_shared_files_are_linked_and_read_before_the_environments_own(environment):
    # Ansible reads a group_vars folder's files sorted by name, and the later file wins.
    folder = INVENTORIES / environment / "group_vars" / "all"
    files = sorted(path.name for path in folder.iterdir())
    shared = [name for name in files if (folder / name).is_symlink()]
    assert {(folder / name).resolve() for name in shared} == {
        (SHARED / "all" / "operator.yml").resolve(),
        (SHARED / "all" / "derived.yml").resolve(),
    }
    assert files.index("environment.yml") > max(files.index(name) for name in shared)
    for name in ("connection.yml", "monitoring.yml"):
        link = INVENTORIES / environment / "group_vars" / "api_servers" / name
        assert link.is_symlink()
        assert link.resolve() == (SHARED / "api_servers" / name).resolve()


def test_each_environment_is_a_stack_of_its_own():
    projects = [own_values(environment)["project_name"] for environment in ENVIRONMENTS]
    assert len(set(projects)) == len(projects)
    assert read_yaml(SHARED / "all" / "operator.yml")["project_name"] not in projects


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_dynamic_inventory_finds_the_environments_instances(environment):
    # The plugin reads its file before any variable exists; preflight refuses a run where they differ.
    own = own_values(environment)
    dynamic = read_yaml(INVENTORIES / environment / "aws_ec2.yml")
    assert dynamic["filters"]["tag:Project"] == own["project_name"]
    assert own["aws_region"] in dynamic["regions"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_vault_file_holds_only_encrypted_values(environment):
    # One by one, with the environment's vault id: readable without the password to what reads no secret.
    vault = INVENTORIES / environment / "group_vars" / "all" / "vault.yml"
    values = read_yaml(vault) or {}
    assert isinstance(values, dict), f"{vault}: encrypt each value with encrypt_string, not the whole file"
    plain = sorted(name for name, value in values.items() if not isinstance(value, VaultValue))
    assert not plain, f"{vault} holds plain values: {plain}"
    for name, value in values.items():
        assert value.startswith(f"$ANSIBLE_VAULT;1.2;AES256;{environment}\n"), f"{name}: not the vault id {environment}"
