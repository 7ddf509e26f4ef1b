"""The rotations and a restore with cut-over on a fleet behind the load balancer, with not one failed request.

A fleet of two instances of its own (load_balancer_fleet.py; test_load_balancer.py has the other jobs),
in this order, while clients read (and, for the write token's rotation, write) through the load
balancer: the write token's rotation, the SSH key's, then a restore that cuts the API over to the
restored table.
"""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest
from load_balancer_fleet import Fleet, Traffic, load_balancer_url, needs_hosts

BASE = {
    "project_name": "ranker-rotate",
    "api_instance_count": 2,
    "api_load_balancer": True,
    # Short, so that each drain takes seconds (the operator's default is 15).
    "api_load_balancer_deregistration_delay": 3,
    "load_balancer_poll_delay": 1,
}


@pytest.fixture(scope="module")
def fleet(module_playbook_runner, embedded_aws):
    """The module's fleet, made once; torn down at the end, whatever happened."""
    fleet = Fleet(module_playbook_runner, embedded_aws, BASE)
    made = fleet.run("site.yml")
    assert made.returncode == 0, made.output[-5000:]
    fleet.url = load_balancer_url(fleet.project)
    fleet.instances = fleet.running()
    assert len(fleet.instances) == 2
    fleet.assert_serving()
    yield fleet
    torn_down = fleet.teardown()
    assert torn_down.returncode == 0, torn_down.output[-3000:]
    assert not any(fleet.aws.project_resources(fleet.project).values())


@needs_hosts
def test_the_write_token_rotates_without_one_failed_read_or_write(fleet):
    old = fleet.token()
    with Traffic(fleet.url, write_token=fleet.token) as traffic:
        rotated = fleet.run("playbooks/rotate.yml", rotate="write_token")
    assert rotated.returncode == 0, rotated.output[-5000:]
    traffic.assert_none_failed(at_least=100)
    assert traffic.written > 10, traffic.written
    new = fleet.token()
    assert new != old
    assert f"Write token: ssm:/{fleet.project}/api/write-token" in rotated.text
    assert (fleet.runner.secrets / f"{fleet.project}.api-write-token").read_text().strip() == new
    # Afterwards only the new token writes, on every instance (the load balancer spreads the tries).
    assert {fleet.write_with(old) for _ in range(6)} == {401}
    assert {fleet.write_with(new) for _ in range(6)} == {201}
    ssm = fleet.aws.client("ssm")
    left = {p["Name"] for p in ssm.get_parameters_by_path(Path=f"/{fleet.project}/api/", Recursive=True)["Parameters"]}
    assert left == {f"/{fleet.project}/api/write-token"}
    fleet.assert_serving()


@needs_hosts
def test_the_ssh_key_rotates_without_replacing_an_instance(fleet, tmp_path):
    key = fleet.key()
    old_key = tmp_path / "old-key"
    shutil.copy2(key, old_key)
    with Traffic(fleet.url) as traffic:
        rotated = fleet.run("playbooks/rotate.yml", rotate="ssh_key")
    assert rotated.returncode == 0, rotated.output[-5000:]
    traffic.assert_none_failed(at_least=20)
    fleet.assert_serving()
    assert key.read_text() != old_key.read_text()
    new_public = (key.parent / f"{fleet.project}.pub").read_text().split()[:2]
    [pair] = fleet.aws.client("ec2").describe_key_pairs(KeyNames=[fleet.project], IncludePublicKey=True)["KeyPairs"]
    assert pair["PublicKey"].split()[:2] == new_public
    ssm = fleet.aws.client("ssm")
    stored = ssm.get_parameter(Name=f"/{fleet.project}/ssh/private-key", WithDecryption=True)["Parameter"]["Value"]
    assert stored.strip() == key.read_text().strip()
    for instance in fleet.instances:
        assert fleet.ssh(instance, key, "true").returncode == 0
        refused = fleet.ssh(instance, old_key, "true")
        assert refused.returncode == 255, refused.stderr
        assert "Permission denied" in refused.stderr, refused.stderr
    left = {p["Name"] for p in ssm.get_parameters_by_path(Path=f"/{fleet.project}/ssh/", Recursive=True)["Parameters"]}
    assert left == {f"/{fleet.project}/ssh/private-key"}


@needs_hosts
def test_a_restore_with_cut_over_switches_the_table_without_one_failed_request(fleet):
    dynamodb, table = fleet.aws.client("dynamodb"), f"{fleet.project}-data"
    backup = fleet.run("playbooks/backup.yml")
    assert backup.returncode == 0, backup.output[-5000:]
    with Traffic(fleet.url) as traffic:
        restored = fleet.run(
            "playbooks/restore.yml",
            restore_from="latest",
            restore_cutover=True,
            restore_photos_at="none",
        )
    assert restored.returncode == 0, restored.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    fleet.assert_serving()
    ssm = fleet.aws.client("ssm")
    in_use = ssm.get_parameter(Name=f"/{fleet.project}/datastore/table")["Parameter"]["Value"]
    assert in_use != table
    assert dynamodb.describe_table(TableName=in_use)["Table"]["TableStatus"] == "ACTIVE"
    # The old table is kept, and says what replaced it.
    old_arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
    tags = {t["Key"]: t["Value"] for t in dynamodb.list_tags_of_resource(ResourceArn=old_arn)["Tags"]}
    assert tags.get("ReplacedBy") == in_use, tags
    # Every instance serves the restored table now: the shops written before the backup are there.
    shops = json.loads(urllib.request.urlopen(fleet.url + "/shops?limit=5", timeout=10).read())
    assert shops["items"], shops
    rerun = fleet.run("site.yml")
    assert rerun.returncode == 0, rerun.output[-5000:]
    changed = {host: recap["changed"] for host, recap in rerun.recaps.items()}
    assert changed == dict.fromkeys(changed, 0), rerun.output[-5000:]
