"""Playbook behaviour of provisioning and teardown against the embedded AWS."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sandbox_dynamic_inventory

PROJECT = "ranker-pytest"
VARS = {"project_name": PROJECT}
VENV_BIN = Path(sys.executable).parent


def test_check_mode_on_an_empty_account_is_green_and_creates_nothing(run_playbook, aws):
    result = run_playbook("playbooks/provision.yml", "--check", "--diff", extra_vars=VARS)

    assert result.returncode == 0, result.output[-3000:]
    assert aws.is_empty()
    assert not run_playbook.secrets.exists(), "check mode must not write the private key"


def test_teardown_keeps_the_bucket_unless_confirmed_and_a_second_run_changes_nothing(run_playbook, aws):
    assert run_playbook("playbooks/provision.yml", extra_vars=VARS).returncode == 0

    kept = run_playbook("playbooks/teardown.yml", extra_vars=VARS)
    assert kept.returncode == 0, kept.output[-3000:]
    left = aws.project_resources(PROJECT)
    assert left["buckets"] == [f"sandbox-{PROJECT}-media-123456789012"]  # moto's account id
    assert not any(left[kind] for kind in left if kind != "buckets"), left
    assert not (run_playbook.secrets / "ssh" / PROJECT).exists()

    removed = run_playbook("playbooks/teardown.yml", extra_vars={**VARS, "teardown_delete_data": True})
    assert removed.returncode == 0, removed.output[-3000:]
    assert not any(aws.project_resources(PROJECT).values())

    again = run_playbook("playbooks/teardown.yml", extra_vars={**VARS, "teardown_delete_data": True})
    assert again.returncode == 0
    assert again.recap["changed"] == 0, again.output[-3000:]


def test_a_lost_private_key_is_fetched_from_the_account_and_the_key_pair_stays(run_playbook, aws):
    ec2, ssm = aws.client("ec2"), aws.client("ssm")
    assert run_playbook("playbooks/provision.yml", extra_vars=VARS).returncode == 0
    private_key = run_playbook.secrets / "ssh" / PROJECT
    kept = private_key.read_bytes()
    stored = ssm.get_parameter(Name=f"/{PROJECT}/ssh/private-key", WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString"
    assert stored["Value"] == kept.decode().strip()
    fingerprint = ec2.describe_key_pairs(KeyNames=[PROJECT])["KeyPairs"][0]["KeyFingerprint"]
    private_key.unlink()
    private_key.with_suffix(".pub").unlink()

    result = run_playbook("playbooks/provision.yml", extra_vars=VARS)

    assert result.returncode == 0, result.output[-3000:]
    assert private_key.read_bytes() == kept
    assert private_key.stat().st_mode & 0o777 == 0o600
    assert ec2.describe_key_pairs(KeyNames=[PROJECT])["KeyPairs"][0]["KeyFingerprint"] == fingerprint
    assert result.recap["changed"] == 0, result.output[-3000:]


def test_two_stacks_from_one_controller_keep_a_write_token_each(run_playbook, aws):
    """Two projects from one checkout (an environment each): each caches its own token, and tearing one
    down leaves the other's (one shared file made each stack's runs read the other's token)."""
    ssm, other = aws.client("ssm"), "ranker-pytest-two"
    for project in (PROJECT, other):
        made = run_playbook("playbooks/provision.yml", extra_vars={"project_name": project})
        assert made.returncode == 0, made.output[-3000:]
    tokens = {}
    for project in (PROJECT, other):
        stored = ssm.get_parameter(Name=f"/{project}/api/write-token", WithDecryption=True)["Parameter"]["Value"]
        tokens[project] = (run_playbook.secrets / f"{project}.api-write-token").read_text().strip()
        assert tokens[project] == stored, project
    assert tokens[PROJECT] != tokens[other]

    removed = run_playbook("playbooks/teardown.yml", extra_vars={"project_name": other, "teardown_delete_data": True})
    assert removed.returncode == 0, removed.output[-3000:]
    assert not (run_playbook.secrets / f"{other}.api-write-token").exists()
    assert (run_playbook.secrets / f"{PROJECT}.api-write-token").read_text().strip() == tokens[PROJECT]


def test_a_key_pair_whose_private_key_is_nowhere_stops_the_run_with_the_way_out(run_playbook, aws):
    assert run_playbook("playbooks/provision.yml", extra_vars=VARS).returncode == 0
    aws.client("ssm").delete_parameter(Name=f"/{PROJECT}/ssh/private-key")
    (run_playbook.secrets / "ssh" / PROJECT).unlink()

    result = run_playbook("playbooks/provision.yml", extra_vars=VARS)

    assert result.returncode != 0
    assert f"Key pair {PROJECT} in EC2" in result.text
    assert "its private key is nowhere" in result.text
    assert f"aws ec2 delete-key-pair --key-name {PROJECT}" in result.text
    # Nothing was replaced: EC2 still holds the key the instances trust.
    assert aws.client("ec2").describe_key_pairs(KeyNames=[PROJECT])["KeyPairs"]


@pytest.mark.parametrize(
    ("choice", "name_pattern"),
    [
        ({}, "ubuntu/images/hvm-ssd*/ubuntu-*-18.04-amd64-server-*"),
        ({"ubuntu_release": "24.04"}, "ubuntu/images/hvm-ssd*/ubuntu-*-24.04-amd64-server-*"),
        ({"instance_distribution": "debian", "debian_release": "12"}, "debian-12-amd64-*"),
    ],
    ids=["default-ubuntu-18.04", "ubuntu-24.04", "debian-12"],
)
def test_the_instance_runs_the_newest_image_of_the_chosen_release(run_playbook, aws, choice, name_pattern):
    result = run_playbook("playbooks/provision.yml", extra_vars={**VARS, **choice})
    assert result.returncode == 0, result.output[-3000:]

    ec2 = aws.client("ec2")
    owner = "136693071363" if choice.get("instance_distribution") == "debian" else "099720109477"
    # Deprecated images too: AWS deprecates them after two years, every Ubuntu 18.04 image among them.
    images = ec2.describe_images(
        Owners=[owner], IncludeDeprecated=True, Filters=[{"Name": "name", "Values": [name_pattern]}]
    )["Images"]
    assert len(images) > 1, "the sandbox's image list must offer a choice"
    newest = max(images, key=lambda image: image["CreationDate"])
    (instance,) = [
        i
        for r in ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["Reservations"]
        for i in r["Instances"]
    ]
    assert instance["ImageId"] == newest["ImageId"]


def test_the_dynamic_inventory_finds_the_instances_by_tag(run_playbook, aws, tmp_path):
    assert run_playbook("playbooks/provision.yml", extra_vars={**VARS, "api_instance_count": 2}).returncode == 0
    inventory = tmp_path / "dynamic"
    inventory.mkdir()
    (inventory / "aws_ec2.yml").write_text(sandbox_dynamic_inventory(aws.endpoint, PROJECT))

    listed = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(inventory), "--graph", "api_servers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    running = [
        i["InstanceId"]
        for r in aws.client("ec2").describe_instances(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])[
            "Reservations"
        ]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    assert len(running) == 2
    for instance_id in running:
        assert instance_id in listed
