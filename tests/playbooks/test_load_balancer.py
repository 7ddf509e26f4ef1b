"""The load balancer (api_load_balancer): one endpoint, and not one failed request while the fleet changes.

The sandbox's load balancer is the embedded AWS's HAProxy stand-in (sandbox/load_balancers.py), which
follows the ELB API: targets registered there get traffic once its health checks of /readyz pass, and
deregistered ones are drained for the target group's deregistration delay. The playbooks talk to the ELB
API only, so what this proves is their order of steps: a host leaves the load balancer before it
restarts, and a new one takes requests before an old one stops.
"""

from __future__ import annotations

import json
import os
import shutil
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
BASE = {"project_name": PROJECT, "api_load_balancer": True, "api_load_balancer_deregistration_delay": DELAY}
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox")


class Traffic:
    """Clients that keep asking the load balancer for the shop list, each request on a new connection."""

    def __init__(self, url: str, clients: int = 2) -> None:
        self.url = url.rstrip("/") + "/shops"
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        while not self.stop_event.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    response.read()
                    failure = None if response.status == 200 else f"status {response.status}"
            except urllib.error.HTTPError as error:
                failure = f"status {error.code}: {error.read()[:200]!r}"
            except OSError as error:
                failure = f"{type(error).__name__}: {error}"
            with self.lock:
                self.sent += 1
                if failure:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {failure}")
            time.sleep(0.05)

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
    """A copy of the service whose source differs by one comment: a new build for deploy.yml to roll out."""
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


@pytest.fixture
def fleet(run_playbook, aws):
    """run_playbook with sandbox hosts and the sandbox's dynamic inventory pointed at this embedded AWS
    and project (deploy.yml and reprovision.yml find the instances by tag); tears everything down at the
    end, whatever happened."""
    run_playbook.use_dynamic_inventory(PROJECT)

    def run(playbook: str, **extra_vars):
        return run_playbook(playbook, extra_vars={**BASE, **extra_vars}, boot_hosts=True)

    yield run
    torn_down = run("playbooks/teardown.yml", teardown_delete_data=True)
    assert torn_down.returncode == 0, torn_down.output[-3000:]


@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts (systemd-nspawn) need root")
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is missing: run sandbox/install-host-deps")
def test_a_fleet_behind_the_load_balancer_changes_without_one_failed_request(fleet, aws, tmp_path):
    site = fleet("site.yml", api_instance_count=3)
    assert site.returncode == 0, site.output[-5000:]
    url = load_balancer_url()
    assert f"Load balancer: {url}" in site.text
    assert f"API: {url}/" in site.text
    # Exactly the three running instances, each healthy by the load balancer's own checks.
    instances = running_ids(aws)
    assert len(instances) == 3
    assert targets(aws) == dict.fromkeys(instances, "healthy")
    # The API port is open to the load balancer's group only, no longer to the internet.
    ec2 = aws.client("ec2")
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

    rerun = fleet("site.yml", api_instance_count=3)
    assert rerun.returncode == 0, rerun.output[-5000:]
    changed = {host: recap["changed"] for host, recap in rerun.recaps.items()}
    assert changed == dict.fromkeys(changed, 0), rerun.output[-5000:]

    # A rolling deploy of a changed build to all three hosts. It stays the build of the runs after it,
    # as a repository's new commit does (site.yml's configure phase would install the old one in place).
    build = {"api_service_source_dir": str(changed_build(tmp_path))}
    with Traffic(url) as traffic:
        deploy = fleet("playbooks/deploy.yml", api_instance_count=3, **build)
    assert deploy.returncode == 0, deploy.output[-5000:]
    deployed = deploy.recaps
    assert all(deployed[instance]["changed"] > 0 for instance in instances), deployed
    traffic.assert_none_failed(at_least=100)

    # One instance replaced by a new one: the new one serves before the old one stops.
    with Traffic(url) as traffic:
        replaced = fleet("playbooks/reprovision.yml", api_instance_count=3, **build)
    assert replaced.returncode == 0, replaced.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    after = running_ids(aws)
    assert len(after) == 3
    assert len(after - instances) == 1
    assert targets(aws) == dict.fromkeys(after, "healthy")

    # Scaling in: the instance that goes is drained before it is terminated.
    with Traffic(url) as traffic:
        scaled = fleet("site.yml", api_instance_count=2, **build)
    assert scaled.returncode == 0, scaled.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    two = running_ids(aws)
    assert len(two) == 2
    assert two < after
    assert targets(aws) == dict.fromkeys(two, "healthy")

    down = fleet("playbooks/teardown.yml", teardown_delete_data=True)
    assert down.returncode == 0, down.output[-5000:]
    elb = aws.client("elbv2")
    assert elb.describe_load_balancers()["LoadBalancers"] == []
    assert elb.describe_target_groups()["TargetGroups"] == []
    assert not any(aws.project_resources(PROJECT).values())
    assert not (STATE_DIR / "load-balancers" / f"{LB_NAME}.json").exists()


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
