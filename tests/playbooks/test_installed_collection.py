"""The collection as a team that runs AWX or ansible-navigator gets it: built from this checkout, installed
into an empty path, and its `site` playbook run from a project folder of its own against the sandbox. A
real run on a booted host, then a rerun that changes nothing, then the teardown, all from the installed
collection; nothing of the checkout is reachable but the sandbox's own tools.

The project folder holds what a team's repository would: an ansible.cfg, the inventory (the sandbox's,
its shared group_vars copied, not linked) and a folder of prebuilt wheelhouses, since the collection
carries no service source.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from conftest import NEEDS_SANDBOX_HOSTS, PlaybookRun, sandbox_dynamic_inventory  # noqa: E402

VENV_BIN = Path(sys.executable).parent
PROJECT = "ranker-coll"
# The sandbox hosts' Debian (bookworm) has Python 3.11: the wheelhouse the host needs.
HOST_PYTHON = "3.11"

pytestmark = NEEDS_SANDBOX_HOSTS


def galaxy_version() -> str:
    return yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The collection built from the checkout and installed into an empty collections path."""
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(build)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    artifact = build / f"coffeeshop-ranker-{galaxy_version()}.tar.gz"
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    # build_ignore keeps the service, the sandbox, the tests and the controller's state out of the artifact.
    kept_out = (
        "service/",
        "sandbox/",
        "tests/",
        "molecule/",
        ".venv/",
        ".sandbox/",
        ".secrets/",
        "roles/sandbox_hosts/",
    )
    assert not [name for name in names if name.startswith(kept_out)], names
    assert "plugins/modules/aws_account_facts.py" in names
    assert "playbooks/site.yml" in names

    collections = tmp_path_factory.mktemp("collections")
    done = subprocess.run(
        # --force: a copy of the same version elsewhere in the default paths (a molecule prerun's in
        # ~/.ansible/collections) would have it skipped. --offline: the dependencies are the `ansible`
        # package's, already installed.
        [str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(collections)]
        + [str(artifact)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=build,  # away from the checkout's ansible.cfg, whose .collections holds the collection already
    )
    assert done.returncode == 0, done.stdout + done.stderr
    installed_at = collections / "ansible_collections" / "coffeeshop" / "ranker"
    assert (installed_at / "MANIFEST.json").is_file()
    return collections


@pytest.fixture(scope="module")
def project(installed, embedded_aws, tmp_path_factory) -> dict:
    """A project folder away from the checkout, and how to run the installed collection's playbooks from it."""
    embedded_aws.reset()
    folder = tmp_path_factory.mktemp("project")

    # The checkout's ansible.cfg (SSH settings, pinned host keys, inventory plugins), with the installed
    # collection as the only collection of ours and a roles path of its own: nothing resolves into the checkout.
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "ansible.cfg")
    config["defaults"]["collections_path"] = str(installed)
    config["defaults"]["roles_path"] = str(folder / "roles")
    with (folder / "ansible.cfg").open("w") as handle:
        config.write(handle)
    # The one role of the checkout the sandbox inventory names: the sandbox's machines (test scaffolding,
    # left out of the collection).
    (folder / "roles").mkdir()
    (folder / "roles" / "sandbox_hosts").symlink_to(REPO / "roles" / "sandbox_hosts")

    inventory = folder / "inventory"
    shutil.copytree(REPO / "inventory" / "sandbox", inventory, symlinks=False)
    (inventory / "aws_ec2.yml").write_text(sandbox_dynamic_inventory(embedded_aws.endpoint, PROJECT))

    # The wheelhouse for the host's Python, prebuilt (as `make wheelhouse` leaves it) and copied out.
    subprocess.run(
        [str(REPO / "service" / "tools" / "build-wheelhouse"), HOST_PYTHON],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    wheelhouses = folder / "wheelhouses"
    wheelhouses.mkdir()
    name = f"wheelhouse-py{HOST_PYTHON}"
    shutil.copytree(REPO / "service" / "dist" / name, wheelhouses / name)
    shutil.copy2(REPO / "service" / "dist" / f"{name}.tar", wheelhouses / f"{name}.tar")

    variables = {
        "project_name": PROJECT,
        "api_instance_count": 1,
        "sandbox_repository": str(REPO),
        "prometheus_targets_file": str(folder / "prometheus" / f"{PROJECT}.json"),
    }

    def run(playbook: str, **extra_vars) -> PlaybookRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update(
            ANSIBLE_CONFIG=str(folder / "ansible.cfg"), ANSIBLE_NOCOLOR="1", SANDBOX_AWS_ENDPOINT=embedded_aws.endpoint
        )
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        command = [str(VENV_BIN / "ansible-playbook"), "-i", "inventory", playbook]
        command += ["-e", json.dumps({**variables, **extra_vars})]
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL
        )
        return PlaybookRun(done.returncode, done.stdout + done.stderr)

    yield {"run": run, "folder": folder, "wheelhouses": wheelhouses, "aws": embedded_aws}
    if any(embedded_aws.project_resources(PROJECT).values()):
        run("coffeeshop.ranker.teardown", teardown_delete_data=True)


def test_site_runs_from_the_installed_collection_and_reruns_with_no_change(project):
    run, folder = project["run"], project["folder"]

    # The collection carries no service source: without prebuilt wheelhouses it stops with what to do.
    empty = folder / "no-wheelhouses"
    empty.mkdir()
    first = run("coffeeshop.ranker.site", api_service_controller_wheelhouse_root=str(empty))
    assert first.returncode != 0
    assert "api_service_controller_wheelhouse_root" in first.text, first.output[-3000:]
    assert "make wheelhouse" in first.text, first.output[-3000:]

    site = run("coffeeshop.ranker.site", api_service_controller_wheelhouse_root=str(project["wheelhouses"]))
    assert site.returncode == 0, site.output[-5000:]
    assert "API: http" in site.text
    # Nothing else could have run: the project's ansible.cfg names no collection of ours but the installed
    # one and no role of the checkout but the sandbox's machines (the fixture).

    rerun = run("coffeeshop.ranker.site", api_service_controller_wheelhouse_root=str(project["wheelhouses"]))
    assert rerun.returncode == 0, rerun.output[-5000:]
    changed = {host: recap["changed"] for host, recap in rerun.recaps.items() if recap["changed"]}
    assert not changed, rerun.output[-5000:]


def test_teardown_runs_from_the_installed_collection(project):
    teardown = project["run"]("coffeeshop.ranker.teardown", teardown_delete_data=True)
    assert teardown.returncode == 0, teardown.output[-5000:]
    resources = project["aws"].project_resources(PROJECT)
    assert not any(resources.values()), resources
