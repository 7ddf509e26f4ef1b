"""Bad operator input fails fast: before any AWS call, with a message naming the variable and the rule."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

BAD_INPUTS = [
    # (variable, bad value, words the message must contain)
    ("media_bucket_name", "Coffee-Media", "lowercase letters, digits, dots and hyphens"),
    ("media_bucket_name", "ab", "3 to 63 characters"),
    ("media_bucket_name", "x" * 64, "3 to 63 characters"),
    ("media_bucket_name", "coffee..media", "two adjacent dots"),
    ("media_bucket_name", "192.168.10.20", "formatted as an IP address"),
    ("media_bucket_name", "xn--coffee-media", "reserved prefix 'xn--'"),
    ("media_bucket_name", "coffee-media-s3alias", "reserved suffix '-s3alias'"),
    ("media_bucket_name", "-coffee-media", "begin and end with a lowercase letter or digit"),
    ("ssh_admin_cidr", "0.0.0.0/0", "allow_ssh_from_anywhere"),
    ("ssh_admin_cidr", "10.1.2.3/8", "CIDR notation"),
    ("ssh_admin_cidr", "office", "CIDR notation"),
    ("ssh_admin_cidr", "", "is empty: set it to the network you administer from"),
    ("ssh_admin_cidr", "198.51.100.0/24", "documentation range"),
    ("ssh_admin_cidr", "203.0.113.7/32", "documentation range"),
    ("ssh_admin_cidr", "192.0.2.0/25", "documentation range"),
    ("ssh_admin_cidr", "2001:db8:1::/48", "must be an IPv4 network"),
    ("ssh_admin_cidr", "::/0", "must be an IPv4 network"),
    ("api_vpc_id", "default", "VPC id such as vpc-"),
    ("api_subnet_ids", ["subnet-0abc12345"], "set both, or neither"),
    ("api_subnet_ids", "subnet-0abc12345", "api_subnet_ids"),
    ("api_port", 80, "from 1024 to 65535"),
    ("media_public_prefix", "media", "must be a key prefix such as media/"),
    ("media_public_prefix", "/", "must be a key prefix such as media/"),
    ("media_public_prefix", "../", "must be a key prefix such as media/"),
    ("api_port", "eleven", "unable to convert to int"),
    ("ubuntu_release", "16.04", "value of ubuntu_release must be one of"),
    ("instance_distribution", "centos", "value of instance_distribution must be one of"),
    ("debian_release", "10", "value of debian_release must be one of"),
    ("api_instance_count", 0, "from 1 to 10"),
    ("api_instance_count", 40, "from 1 to 10"),
    ("aws_region", "useast1", "look like an AWS region"),
    ("aws_connection", {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}, "must not set the region"),
    ("instance_type", "micro", "look like an EC2 instance type"),
    ("project_name", "Coffee_Ranker", "lowercase letters, digits and hyphens"),
    ("allow_ssh_from_anywhere", "perhaps", "allow_ssh_from_anywhere"),
    ("api_datastore", "postgres", "value of api_datastore must be one of"),
]


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    BAD_INPUTS,
    ids=[f"{variable}={str(value)[:20]}" for variable, value, _ in BAD_INPUTS],
)
def test_bad_operator_input_fails_before_any_aws_call(run_playbook, aws, variable, value, rule):
    result = run_playbook("playbooks/provision.yml", extra_vars={variable: value})

    assert result.returncode != 0, result.output[-2000:]
    assert variable in result.text
    assert rule in result.text
    assert "preflight" in result.text, "the failure must come from the preflight role"
    assert aws.is_empty(), "a rejected run must not create anything"


def test_the_aws_inventory_with_its_shipped_defaults_stops_in_preflight_naming_ssh_admin_cidr(aws, tmp_path):
    """An operator's first run: inventory/aws's own values, nothing set. No AWS call may happen."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(REPO / "inventory" / "aws" / "group_vars")
    (inventory / "hosts.yml").write_text("all: {}\n")
    # Should anything still call AWS, it would reach the embedded AWS on the loopback, and show there.
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        ANSIBLE_NOCOLOR="1",
    )
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    command = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "site.yml")]
    command += ["-e", json.dumps({"controller_secrets_dir": str(tmp_path / "secrets")})]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    text = " ".join((done.stdout + done.stderr).split())

    assert done.returncode != 0, text[-2000:]
    assert "ssh_admin_cidr" in text
    assert "is empty: set it to the network you administer from" in text
    assert "checkip.amazonaws.com" in text, "the message must say how to find one's address"
    assert "preflight" in text
    assert "Read the AWS account" not in text, "preflight must stop before its first AWS call"
    assert aws.is_empty()


def test_an_inventory_that_does_not_follow_aws_region_and_project_name_is_named(run_playbook, aws):
    run_playbook.use_dynamic_inventory("ranker-pytest")

    other_region = run_playbook(
        "playbooks/provision.yml", extra_vars={"project_name": "ranker-pytest", "aws_region": "eu-west-1"}
    )
    other_project = run_playbook("playbooks/provision.yml", extra_vars={"project_name": "ranker-other"})

    for result in (other_region, other_project):
        assert result.returncode != 0, result.output[-2000:]
        assert f"set `regions` and `filters: tag:Project` in {run_playbook.inventory}/aws_ec2.yml" in result.text
    assert "aws_region eu-west-1:" in other_region.text
    assert "project_name ranker-other and" in other_project.text
    assert aws.is_empty()


def test_several_instances_without_the_shared_datastore_are_refused(run_playbook, aws):
    result = run_playbook("playbooks/provision.yml", extra_vars={"api_instance_count": 3, "api_datastore": "sqlite"})

    assert result.returncode != 0
    assert "api_instance_count 3 needs api_datastore=dynamodb" in result.text
    assert aws.is_empty()


def test_ssh_from_anywhere_is_accepted_when_explicitly_allowed(run_playbook, aws):
    result = run_playbook(
        "playbooks/provision.yml",
        "--check",
        extra_vars={"ssh_admin_cidr": "0.0.0.0/0", "allow_ssh_from_anywhere": True},
    )

    assert result.returncode == 0, result.output[-3000:]
