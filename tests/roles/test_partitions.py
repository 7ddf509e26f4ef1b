"""China and GovCloud regions: ARNs, the EC2 service principal, S3 URLs and Canonical's account follow
the partition of aws_region (rendered from the roles' own defaults and templates, without AWS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).with_name("render_partition.yml")
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

REGIONS = {
    # region: (partition, public base URL of bucket "media-bucket", EC2 principal, Canonical's account)
    "us-east-1": ("aws", "https://media-bucket.s3.us-east-1.amazonaws.com", "ec2.amazonaws.com", "099720109477"),
    "cn-north-1": (
        "aws-cn",
        "https://media-bucket.s3.cn-north-1.amazonaws.com.cn",
        "ec2.amazonaws.com.cn",
        "837727238323",
    ),
    "us-gov-west-1": (
        "aws-us-gov",
        "https://media-bucket.s3.us-gov-west-1.amazonaws.com",
        "ec2.amazonaws.com",
        "513442679011",
    ),
}


def render(tmp_path: Path, region: str, bucket: str = "media-bucket") -> dict:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(REPO / "inventory" / "aws" / "group_vars")
    (inventory / "hosts.yml").write_text("all: {}\n")
    output = tmp_path / "rendered.json"
    variables = {
        "aws_region": region,
        "media_bucket_name": bucket,
        "instance_profile_table_arn": f"arn:aws:dynamodb:{region}:123456789012:table/coffee-ranker-data",
        "partition_output": str(output),
    }
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(variables)],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(output.read_text())


def document(rendered) -> dict:
    """A policy as rendered: Ansible turns a template that is JSON into an object already."""
    return json.loads(rendered) if isinstance(rendered, str) else rendered


@pytest.mark.parametrize(("region", "expected"), list(REGIONS.items()), ids=list(REGIONS))
def test_arns_urls_and_principals_follow_the_partition(tmp_path, region, expected):
    partition, base_url, principal, canonical = expected

    rendered = render(tmp_path, region)

    assert rendered["partition"] == partition
    assert rendered["media_public_base_url"] == base_url
    assert document(rendered["bucket_policy"])["Statement"][0]["Resource"] == (
        f"arn:{partition}:s3:::media-bucket/media/*"
    )
    api_resources = [statement["Resource"] for statement in document(rendered["api_policy"])["Statement"]]
    assert f"arn:{partition}:s3:::media-bucket/media/*" in api_resources
    assert f"arn:{partition}:s3:::media-bucket" in api_resources
    assert document(rendered["trust_policy"])["Statement"][0]["Principal"] == {"Service": principal}
    assert rendered["ubuntu_owner"] == canonical


def test_a_dotted_bucket_name_gets_a_path_style_url(tmp_path):
    # No TLS certificate covers a virtual host with dots in its first label.
    rendered = render(tmp_path, "eu-west-1", bucket="media.example.com")
    assert rendered["media_public_base_url"] == "https://s3.eu-west-1.amazonaws.com/media.example.com"
