"""The load balancer (api_load_balancer): one endpoint, and not one failed request while the fleet changes.

The sandbox's load balancer is the embedded AWS's HAProxy stand-in (sandbox/load_balancers.py), which
follows the ELB API: targets registered there get traffic once its health checks of /readyz pass, and
deregistered ones are drained for the target group's deregistration delay. The playbooks talk to the ELB
API only, so what this proves is their order of steps: a host leaves the load balancer before it
restarts or reboots, and a new one takes requests before an old one stops.

One fleet of two instances (FLEET_SIZE) serves every job of the second half of this module, in order,
while clients read through the load balancer: site.yml rolling a changed build, patch.yml rebooting every
instance, a reprovision and a scale-in. Each asserts that not one request failed. The rotations and a
restore with cut-over have a fleet of their own (test_load_balancer_rotation.py), so that the two
modules run side by side.
"""

from __future__ import annotations

import pytest
from load_balancer_fleet import BOOT_ID, STATE_DIR, Fleet, Traffic, changed_build, load_balancer_url, needs_hosts

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
# Two: while one instance is drained, rebooted or replaced, the other serves every request, which is what
# each job proves; a third would only make each job longer.
FLEET_SIZE = 2
# The per-instance alarms of roles/cost_guardrails (t2.micro, standard credits).
INSTANCE_ALARMS = ("system-check", "instance-check", "cpu-credits")


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
# One fleet of FLEET_SIZE instances behind the load balancer, shared by the tests below, in this order.
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(module_playbook_runner, embedded_aws, tmp_path_factory):
    """The module's fleet; torn down at the end, whatever happened."""
    fleet = Fleet(module_playbook_runner, embedded_aws, BASE, changed_build(tmp_path_factory.mktemp("build")))
    yield fleet
    torn_down = fleet.teardown()
    assert torn_down.returncode == 0, torn_down.output[-3000:]


def instance_alarms(fleet) -> set[str]:
    """The names of the per-instance alarms in the account."""
    cloudwatch = fleet.aws.client("cloudwatch")
    names = {a["AlarmName"] for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"{PROJECT}-")["MetricAlarms"]}
    return {n for n in names if n.startswith(tuple(f"{PROJECT}-{family}-" for family in INSTANCE_ALARMS))}


def wanted_alarms(instances: set[str]) -> set[str]:
    return {f"{PROJECT}-{family}-{i}" for family in INSTANCE_ALARMS for i in instances}


@needs_hosts
def test_a_fleet_behind_the_load_balancer_is_made_idempotently(fleet):
    site = fleet.run("site.yml", api_instance_count=FLEET_SIZE)
    assert site.returncode == 0, site.output[-5000:]
    fleet.url = load_balancer_url(PROJECT)
    assert f"Load balancer: {fleet.url}" in site.text
    assert f"API: {fleet.url}/" in site.text
    fleet.instances = fleet.running()
    assert len(fleet.instances) == FLEET_SIZE
    assert instance_alarms(fleet) == wanted_alarms(fleet.instances)
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

    rerun = fleet.run("site.yml", api_instance_count=FLEET_SIZE)
    assert rerun.returncode == 0, rerun.output[-5000:]
    changed = {host: recap["changed"] for host, recap in rerun.recaps.items()}
    assert changed == dict.fromkeys(changed, 0), rerun.output[-5000:]


@needs_hosts
def test_site_rolls_a_changed_build_out_without_one_failed_request(fleet):
    # The changed build stays the build of every run after it, as a repository's new commit does.
    with Traffic(fleet.url) as traffic:
        site = fleet.run("site.yml", api_instance_count=FLEET_SIZE, **fleet.build)
    assert site.returncode == 0, site.output[-5000:]
    assert all(site.recaps[instance]["changed"] > 0 for instance in fleet.instances), site.recaps
    traffic.assert_none_failed(at_least=100)
    fleet.assert_serving()


@needs_hosts
def test_patch_upgrades_and_reboots_one_instance_at_a_time_without_one_failed_request(fleet):
    probe = fleet.run("tests/playbooks/files/patch_probe.yml")
    assert probe.returncode == 0, probe.output[-3000:]
    boots = {i: fleet.ssh(i, fleet.key(), BOOT_ID).stdout for i in fleet.instances}

    with Traffic(fleet.url) as traffic:
        patched = fleet.run("playbooks/patch.yml")
    assert patched.returncode == 0, patched.output[-5000:]
    traffic.assert_none_failed(at_least=100)
    fleet.assert_serving()
    for instance in fleet.instances:
        after = fleet.ssh(instance, fleet.key(), f"{BOOT_ID}; cat /usr/share/ranker-patch-probe/version")
        assert after.returncode == 0, after.stderr
        assert after.stdout.splitlines()[:-1] != boots[instance].splitlines(), "not rebooted"
        assert after.stdout.splitlines()[-1] == "2", "not upgraded"
    # One at a time: a host rejoined the load balancer before the next one left it.
    assert patched.text.count("Take the host out of the load balancer") == FLEET_SIZE

    again = fleet.run("playbooks/patch.yml")
    assert again.returncode == 0, again.output[-5000:]
    assert all(recap["changed"] == 0 for recap in again.recaps.values()), again.output[-5000:]
    assert "Nothing was pending on any instance" in again.text


@needs_hosts
def test_one_instance_is_replaced_and_one_scaled_in_without_one_failed_request(fleet):
    # One instance replaced by a new one: the new one serves before the old one stops.
    with Traffic(fleet.url) as traffic:
        replaced = fleet.run("playbooks/reprovision.yml", api_instance_count=FLEET_SIZE, **fleet.build)
    assert replaced.returncode == 0, replaced.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    after = fleet.running()
    assert len(after) == FLEET_SIZE
    assert len(after - fleet.instances) == 1
    assert fleet.targets() == dict.fromkeys(after, "healthy")
    # The alarms follow: the new instance's are made, none is left for the one it replaced.
    assert instance_alarms(fleet) == wanted_alarms(after)

    # Scaling in: the instance that goes is drained before it is terminated.
    with Traffic(fleet.url) as traffic:
        scaled = fleet.run("site.yml", api_instance_count=FLEET_SIZE - 1, **fleet.build)
    assert scaled.returncode == 0, scaled.output[-5000:]
    traffic.assert_none_failed(at_least=50)
    remaining = fleet.running()
    assert len(remaining) == FLEET_SIZE - 1
    assert remaining < after
    assert fleet.targets() == dict.fromkeys(remaining, "healthy")
    assert instance_alarms(fleet) == wanted_alarms(remaining)

    down = fleet.teardown()
    assert down.returncode == 0, down.output[-5000:]
    elb = fleet.aws.client("elbv2")
    assert elb.describe_load_balancers()["LoadBalancers"] == []
    assert elb.describe_target_groups()["TargetGroups"] == []
    assert not any(fleet.aws.project_resources(PROJECT).values())
    assert not (STATE_DIR / "load-balancers" / f"{LB_NAME}.json").exists()
