"""The load balancer (api_load_balancer): one endpoint, and not one failed request while the fleet changes.

The sandbox's load balancer is the embedded AWS's HAProxy stand-in (sandbox/load_balancers.py), which
follows the ELB API: targets registered there get traffic once its health checks of /readyz pass, and
deregistered ones are drained for the target group's deregistration delay. The playbooks talk to the ELB
API only, so what this proves is their order of steps: a host leaves the load balancer before it
restarts or reboots, and a new one takes requests before an old one stops.

One fleet of three instances serves every job of the second half of this module, in order, while
clients read (and, for the write token's rotation, write) through the load balancer: site.yml rolling a
changed build, patch.yml rebooting every instance, both rotations, a restore with cut-over, a
reprovision and a scale-in. Each asserts that not one request failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = "ranker-lb"
LB_NAME = f"{PROJECT}-api"
# Short, so that each drain in a rolling deploy takes seconds (the operator's default is 15).
DELAY = 3
# The load balancer is read every second while a host is drained or registered (AWS: every 3 s).
BASE = {
    "project_name": PROJECT,
    "api_load_balancer": True,
    "api_load_balancer_deregistration_delay": DELAY,
    "load_balancer_poll_delay": 1,
}
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox")
# What changes when a host reboots: its kernel's boot id (a VM) and the start of its PID 1 (a container).
BOOT_ID = "cat /proc/sys/kernel/random/boot_id; awk '{print $22}' /proc/1/stat"
NEEDS_HOSTS = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts (systemd-nspawn) need root"),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is missing: run sandbox/install-host-deps"),
]


class Traffic:
    """Clients that keep asking the load balancer for the shop list, each request on a new connection;
    with write_token (a callable that gives the token as a client would read it), one more that keeps
    adding shops."""

    def __init__(self, url: str, clients: int = 2, write_token=None) -> None:
        self.url = url.rstrip("/") + "/shops"
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.written = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        if write_token:
            self.threads.append(threading.Thread(target=self._writer, args=(write_token,), daemon=True))

    def _ask(self, request: urllib.request.Request | str, expected: int) -> str | None:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return None if response.status == expected else f"status {response.status}"
        except urllib.error.HTTPError as error:
            return f"status {error.code}: {error.read()[:200]!r}"
        except OSError as error:
            return f"{type(error).__name__}: {error}"

    def _record(self, failure: str | None, write: bool = False) -> None:
        with self.lock:
            self.sent += 1
            self.written += write and not failure
            if failure:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {'POST' if write else 'GET'} {failure}")

    def _client(self) -> None:
        while not self.stop_event.is_set():
            self._record(self._ask(self.url, 200))
            time.sleep(0.05)

    def _writer(self, write_token) -> None:
        while not self.stop_event.is_set():
            body = json.dumps({"name": f"Traffic {time.time()}", "address": "Load balancer test"}).encode()
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {write_token()}"},
            )
            self._record(self._ask(request, 201), write=True)
            time.sleep(0.3)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def assert_none_failed(self, at_least: int) -> None:
        """At least that many requests were answered during the run, and not one failed."""
        assert self.sent > at_least, self.sent
        assert self.failures == [], (self.sent, self.failures[:20])


def load_balancer_url() -> str:
    record = json.loads((STATE_DIR / "load-balancers" / f"{LB_NAME}.json").read_text())
    return next(listener["url"] for listener in record["listeners"] if listener["protocol"] == "HTTP")


def running_ids(aws) -> set[str]:
    reservations = aws.client("ec2").describe_instances(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )["Reservations"]
    return {i["InstanceId"] for r in reservations for i in r["Instances"]}


def targets(aws) -> dict[str, str]:
    elb = aws.client("elbv2")
    group = elb.describe_target_groups(Names=[LB_NAME])["TargetGroups"][0]
    health = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
    return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in health}


def changed_build(tmp_path: Path) -> Path:
    """A copy of the service whose source differs by one comment: a new build to roll out."""
    copy = tmp_path / "service"
    for part in ("src", "tools", "pyproject.toml", "README.md", "requirements.lock"):
        source = REPO / "service" / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, copy / part)
    init = copy / "src" / "coffee_ranker" / "__init__.py"
    init.write_text(init.read_text() + f"\n# build of the load balancer test, {time.time()}\n")
    return copy


def test_https_with_a_domain_is_made_idempotently_and_torn_down(run_playbook, aws):
    zone_id = aws.client("route53").create_hosted_zone(Name="example.com", CallerReference="lb-test")["HostedZone"][
        "Id"
    ]
    https = {**BASE, "api_domain_name": "api.example.com"}

    first = run_playbook("playbooks/provision.yml", extra_vars=https)
    assert first.returncode == 0, first.output[-5000:]
    again = run_playbook("playbooks/provision.yml", extra_vars=https)
    assert again.returncode == 0, again.output[-5000:]
    assert again.recap["changed"] == 0, again.output[-5000:]

    acm, elb, route53 = aws.client("acm"), aws.client("elbv2"), aws.client("route53")
    [certificate] = acm.list_certificates()["CertificateSummaryList"]
    assert certificate["DomainName"] == "api.example.com"
    assert certificate["Status"] == "ISSUED"
    [balancer] = elb.describe_load_balancers(Names=[LB_NAME])["LoadBalancers"]
    listeners = {
        listener["Port"]: listener
        for listener in elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    }
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    assert listeners[80]["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": certificate["CertificateArn"]}]
    assert listeners[443]["DefaultActions"][0]["Type"] == "forward"
    records = {
        (r["Name"], r["Type"]): r for r in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    }
    assert records[("api.example.com.", "A")]["AliasTarget"]["DNSName"].rstrip(".") == balancer["DNSName"]
    validation = acm.describe_certificate(CertificateArn=certificate["CertificateArn"])["Certificate"]
    record = validation["DomainValidationOptions"][0]["ResourceRecord"]
    assert (record["Name"], "CNAME") in records

    down = run_playbook("playbooks/teardown.yml", extra_vars={**https, "teardown_delete_data": True})
    assert down.returncode == 0, down.output[-5000:]
    assert acm.list_certificates()["CertificateSummaryList"] == []
    assert elb.describe_load_balancers()["LoadBalancers"] == []
    assert elb.describe_target_groups()["TargetGroups"] == []
    left = {
        (r["Name"], r["Type"]) for r in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    }
    assert left == {("example.com.", "NS"), ("example.com.", "SOA")}
    assert [g["GroupName"] for g in aws.client("ec2").describe_security_groups()["SecurityGroups"]] == ["default"]
    again = run_playbook("playbooks/teardown.yml", extra_vars={**https, "teardown_delete_data": True})
    assert again.returncode == 0, again.output[-5000:]
    assert again.recap["changed"] == 0, again.output[-5000:]


def test_a_domain_without_the_load_balancer_stops_before_any_aws_call(run_playbook, aws):
    result = run_playbook(
        "playbooks/provision.yml", extra_vars={"project_name": PROJECT, "api_domain_name": "api.example.com"}
    )
    assert result.returncode != 0
    assert "api.example.com'' needs api_load_balancer=true: the certificate and the HTTPS listener" in result.text
    assert aws.is_empty()


def test_check_mode_with_the_load_balancer_on_an_empty_account_creates_nothing(run_playbook, aws):
    result = run_playbook("playbooks/provision.yml", "--check", extra_vars={**BASE, "api_instance_count": 2})
    assert result.returncode == 0, result.output[-5000:]
    assert aws.is_empty()
    assert aws.client("elbv2").describe_load_balancers()["LoadBalancers"] == []


# ---------------------------------------------------------------------------------------------------------
# One fleet of three instances behind the load balancer, shared by the tests below, in this order.
# ---------------------------------------------------------------------------------------------------------


class Fleet:
    """site.yml and the day-2 playbooks against one stack of this module, with sandbox hosts and the
    sandbox's dynamic inventory (the day-2 playbooks find the instances by tag)."""

    def __init__(self, runner, aws, build_dir: Path) -> None:
        self.runner, self.aws = runner, aws
        self.build = {"api_service_source_dir": str(build_dir)}
        self.instances: set[str] = set()
        self.url = ""

    def run(self, playbook: str, *args: str, **extra_vars):
        return self.runner(playbook, *args, extra_vars={**BASE, **extra_vars}, boot_hosts=True)

    def token(self) -> str:
        """The write token as a client reads it: from the account, each time."""
        ssm = self.aws.client("ssm")
        return ssm.get_parameter(Name=f"/{PROJECT}/api/write-token", WithDecryption=True)["Parameter"]["Value"]

    def ssh(self, instance_id: str, key: Path, command: str) -> subprocess.CompletedProcess:
        """A login as the instances' user with that private key, checking the pinned host key."""
        record = json.loads(next(STATE_DIR.glob(f"hosts/{PROJECT}-{instance_id}/host.json")).read_text())
        known_hosts = self.runner.secrets / "ssh" / f"{PROJECT}.known_hosts"
        return subprocess.run(
            ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", f"HostKeyAlias={instance_id}", "-o",
             "StrictHostKeyChecking=yes", f"{record['user']}@{record['address']}", command],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def write_with(self, token: str) -> int:
        """The status of a shop written through the load balancer with that token."""
        request = urllib.request.Request(
            self.url + "/shops",
            data=json.dumps({"name": "Token probe", "address": "Load balancer test"}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def assert_serving(self) -> None:
        """The same three instances run, each healthy by the load balancer's own checks."""
        assert running_ids(self.aws) == self.instances
        assert targets(self.aws) == dict.fromkeys(self.instances, "healthy")


@pytest.fixture(scope="module")
def fleet(module_playbook_runner, embedded_aws, tmp_path_factory):
    """The module's fleet; torn down at the end, whatever happened."""
    module_playbook_runner.use_dynamic_inventory(PROJECT)
    fleet = Fleet(module_playbook_runner, embedded_aws, changed_build(tmp_path_factory.mktemp("build")))
    yield fleet
    torn_down = fleet.run("playbooks/teardown.yml", teardown_delete_data=True)
    assert torn_down.returncode == 0, torn_down.output[-3000:]


def needs_hosts(test):
    for mark in NEEDS_HOSTS:
        test = mark(test)
    return test


@needs_hosts
def test_a_fleet_behind_the_load_balancer_is_made_idempotently(fleet):
    site = fleet.run("site.yml", api_instance_count=3)
    assert site.returncode == 0, site.output[-5000:]
    fleet.url = load_balancer_url()
    assert f"Load balancer: {fleet.url}" in site.text
    assert f"API: {fleet.url}/" in site.text
    fleet.instances = running_ids(fleet.aws)
    assert len(fleet.instances) == 3
    fleet.assert_serving()
    # The API port is open to the load balancer's group only, no longer to the internet.
    ec2 = fleet.aws.client("ec2")
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(Filters=[{"Name": "tag:Project", "Values": [PROJECT]}])["SecurityGroups"]
    }
    api_rules = [p for p in groups[f"{PROJECT}-api"]["IpPermissions"] if p.get("FromPort") == 11373]
    assert [(r["IpRanges"], r["Ipv6Ranges"]) for r in api_rules] == [([], [])], api_rules
    assert [pair["GroupId"] for r in api_rules for pair in r["UserIdGroupPairs"]] == [
        groups[f"{PROJECT}-lb"]["GroupId"]
    ]
    assert sorted(p["FromPort"] for p in groups[f"{PROJECT}-lb"]["IpPermissions"]) == [80, 443]

    rerun = fleet.run("site.yml", api_instance_count=3)
    assert rerun.returncode == 0, rerun.output[-5000:]
    changed = {host: recap["changed"] for host, recap in rerun.recaps.items()}
    assert changed == dict.fromkeys(changed, 0), rerun.output[-5000:]


@needs_hosts
def test_site_rolls_a_changed_build_out_without_one_failed_request(fleet):
    # The changed build stays the build of every run after it, as a repository's new commit does.
    with Traffic(fleet.url) as traffic:
        site = fleet.run("site.yml", api_instance_count=3, **fleet.build)
    assert site.returncode == 0, site.output[-5000:]
    assert all(site.recaps[instance]["changed"] > 0 for instance in fleet.instances), site.recaps
    traffic.assert_none_failed(at_least=100)
    fleet.assert_serving()


@needs_hosts
def test_patch_upgrades_and_reboots_one_instance_at_a_time_without_one_failed_request(fleet):
    probe = fleet.run("tests/playbooks/files/patch_probe.yml")
    assert probe.returncode == 0, probe.output[-3000:]
    boots = {i: fleet.ssh(i, fleet.runner.secrets / "ssh" / PROJECT, BOOT_ID).stdout for i in fleet.instances}

    with Traffic(fleet.url) as traffic:
        patched = fleet.run("playbooks/patch.yml")
    assert patched.returncode == 0, patched.output[-5000:]
    traffic.assert_none_failed(at_least=100)
    fleet.assert_serving()
    key = fleet.runner.secrets / "ssh" / PROJECT
    for instance in fleet.instances:
        after = fleet.ssh(instance, key, f"{BOOT_ID}; cat /usr/share/ranker-patch-probe/version")
        assert after.returncode == 0, after.stderr
        assert after.stdout.splitlines()[:-1] != boots[instance].splitlines(), "not rebooted"
        assert after.stdout.splitlines()[-1] == "2", "not upgraded"
    # One at a time: a host rejoined the load balancer before the next one left it.
    assert patched.text.count("Take the host out of the load balancer") == 3

    again = fleet.run("playbooks/patch.yml")
    assert again.returncode == 0, again.output[-5000:]
    assert all(recap["changed"] == 0 for recap in again.recaps.values()), again.output[-5000:]
    assert "Nothing was pending on any instance" in again.text


@needs_hosts
def test_the_write_token_rotates_without_one_failed_read_or_write(fleet):
    old = fleet.token()
    with Traffic(fleet.url, write_token=fleet.token) as traffic:
        rotated = fleet.run("playbooks/rotate.yml", rotate="write_token", **fleet.build)
    assert rotated.returncode == 0, rotated.output[-5000:]
    traffic.assert_none_failed(at_least=100)
    assert traffic.written > 10, traffic.written
    new = fleet.token()
    assert new != old
    assert f"Write token: ssm:/{PROJECT}/api/write-token" in rotated.text
    assert (fleet.runner.secrets / "api-write-token").read_text().strip() == new
    # Afterwards only the new token writes, on every instance (the load balancer spreads the tries).
    assert {fleet.write_with(old) for _ in range(6)} == {401}
    assert {fleet.write_with(new) for _ in range(6)} == {201}
    ssm = fleet.aws.client("ssm")
    left = {p["Name"] for p in ssm.get_parameters_by_path(Path=f"/{PROJECT}/api/", Recursive=True)["Parameters"]}
    assert left == {f"/{PROJECT}/api/write-token"}
    fleet.assert_serving()


@needs_hosts
def test_the_ssh_key_rotates_without_replacing_an_instance(fleet, tmp_path):
    key = fleet.runner.secrets / "ssh" / PROJECT
    old_key = tmp_path / "old-key"
    shutil.copy2(key, old_key)
    with Traffic(fleet.url) as traffic:
        rotated = fleet.run("playbooks/rotate.yml", rotate="ssh_key", **fleet.build)
    assert rotated.returncode == 0, rotated.output[-5000:]
    traffic.assert_none_failed(at_least=20)
    fleet.assert_serving()
    assert key.read_text() != old_key.read_text()
    new_public = (key.parent / f"{PROJECT}.pub").read_text().split()[:2]
    [pair] = fleet.aws.client("ec2").describe_key_pairs(KeyNames=[PROJECT], IncludePublicKey=True)["KeyPairs"]
    assert pair["PublicKey"].split()[:2] == new_public
    ssm = fleet.aws.client("ssm")
    stored = ssm.get_parameter(Name=f"/{PROJECT}/ssh/private-key", WithDecryption=True)["Parameter"]["Value"]
    assert stored.strip() == key.read_text().strip()
    for instance in fleet.instances:
        assert fleet.ssh(instance, key, "true").returncode == 0
        refused = fleet.ssh(instance, old_key, "true")
        assert refused.returncode == 255, refused.stderr
        assert "Permission denied" in refused.stderr, refused.stderr
    left = {p["Name"] for p in ssm.get_parameters_by_path(Path=f"/{PROJECT}/ssh/", Recursive=True)["Parameters"]}
    assert left == {f"/{PROJECT}/ssh/private-key"}


@needs_hosts
def test_a_restore_with_cut_over_switches_the_table_without_one_failed_request(fleet):
    dynamodb, table = fleet.aws.client("dynamodb"), f"{PROJECT}-data"
    backup = fleet.run("playbooks/backup.yml")
    assert backup.returncode == 0, backup.output[-5000:]
    with Traffic(fleet.url) as traffic:
        restored = fleet.run(
            "playbooks/restore.yml",
            restore_from="latest",
            restore_cutover=True,
            restore_photos_at="none",
            **fleet.build,
        )
    assert restored.returncode == 0, restored.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    fleet.assert_serving()
    ssm = fleet.aws.client("ssm")
    in_use = ssm.get_parameter(Name=f"/{PROJECT}/datastore/table")["Parameter"]["Value"]
    assert in_use != table
    assert dynamodb.describe_table(TableName=in_use)["Table"]["TableStatus"] == "ACTIVE"
    # The old table is kept, and says what replaced it.
    old_arn = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
    tags = {t["Key"]: t["Value"] for t in dynamodb.list_tags_of_resource(ResourceArn=old_arn)["Tags"]}
    assert tags.get("ReplacedBy") == in_use, tags
    # Every instance serves the restored table now: the shops written before the backup are there.
    shops = json.loads(urllib.request.urlopen(fleet.url + "/shops?limit=5", timeout=10).read())
    assert shops["items"], shops
    rerun = fleet.run("site.yml", api_instance_count=3, **fleet.build)
    assert rerun.returncode == 0, rerun.output[-5000:]
    changed = {host: recap["changed"] for host, recap in rerun.recaps.items()}
    assert changed == dict.fromkeys(changed, 0), rerun.output[-5000:]


@needs_hosts
def test_one_instance_is_replaced_and_one_scaled_in_without_one_failed_request(fleet):
    # One instance replaced by a new one: the new one serves before the old one stops.
    with Traffic(fleet.url) as traffic:
        replaced = fleet.run("playbooks/reprovision.yml", api_instance_count=3, **fleet.build)
    assert replaced.returncode == 0, replaced.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    after = running_ids(fleet.aws)
    assert len(after) == 3
    assert len(after - fleet.instances) == 1
    assert targets(fleet.aws) == dict.fromkeys(after, "healthy")

    # Scaling in: the instance that goes is drained before it is terminated.
    with Traffic(fleet.url) as traffic:
        scaled = fleet.run("site.yml", api_instance_count=2, **fleet.build)
    assert scaled.returncode == 0, scaled.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    two = running_ids(fleet.aws)
    assert len(two) == 2
    assert two < after
    assert targets(fleet.aws) == dict.fromkeys(two, "healthy")

    down = fleet.run("playbooks/teardown.yml", teardown_delete_data=True)
    assert down.returncode == 0, down.output[-5000:]
    elb = fleet.aws.client("elbv2")
    assert elb.describe_load_balancers()["LoadBalancers"] == []
    assert elb.describe_target_groups()["TargetGroups"] == []
    assert not any(fleet.aws.project_resources(PROJECT).values())
    assert not (STATE_DIR / "load-balancers" / f"{LB_NAME}.json").exists()
