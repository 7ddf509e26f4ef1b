"""The ports and the instances' CPU credits: preflight's refusals (before any AWS call), the security
group's rules for both metrics ports from monitoring_cidr only, the credit mode of an existing instance,
and ssh_port held while instances run."""

import pytest

BAD_INPUTS = [
    # (extra variables, words the message must contain)
    ({"instance_type": "t4g.micro"}, "is an arm64 (Graviton) type"),
    ({"instance_type": "a1.medium"}, "x86_64 types only"),
    ({"instance_type": "m6g.large"}, "x86_64 types only"),
    ({"instance_type": "c7gn.xlarge"}, "x86_64 types only"),
    ({"instance_type": "m5.large", "instance_cpu_credits": "unlimited"}, "applies to burstable types only"),
    ({"instance_cpu_credits": "boundless"}, "value of instance_cpu_credits must be one of"),
    ({"api_metrics_port": 11373}, "api_metrics_port 11373 must differ from api_port"),
    ({"api_metrics_port": 9100}, "must differ from node_exporter"),
    ({"api_metrics_port": 80}, "api_metrics_port 80 must be a TCP port from 1024 to 65535"),
    ({"ssh_port": 11374}, "ssh_port 11374 must differ from api_metrics_port"),
    ({"api_metrics_port": 70000}, "must be a TCP port from 1024 to 65535"),
    ({"monitoring_cidr": "10.1.2.3/8"}, "must be an IPv4 network in CIDR notation"),
    ({"monitoring_cidr": "2001:db8::/32"}, "must be an IPv4 network"),
    ({"monitoring_cidr": "0.0.0.0/0"}, "must not open the metrics ports to the whole internet"),
]


@pytest.mark.parametrize(("variables", "rule"), BAD_INPUTS, ids=[str(v)[:40] for v, _ in BAD_INPUTS])
def test_bad_metrics_or_instance_input_fails_before_any_aws_call(run_playbook, aws, variables, rule):
    result = run_playbook("playbooks/provision.yml", extra_vars=variables)

    assert result.returncode != 0, result.output[-2000:]
    assert rule in result.text, result.output[-2000:]
    for variable, value in variables.items():
        assert variable in result.text, f"the message must name {variable}"
        assert str(value) in result.text, f"the message must name the value {value}"
    assert "preflight" in result.text, "the failure must come from the preflight role"
    assert "Read the AWS account" not in result.text, "preflight must stop before its first AWS call"
    assert aws.is_empty()


def test_x86_64_burstable_types_and_unlimited_credits_pass_preflight(run_playbook, aws):
    result = run_playbook(
        "playbooks/provision.yml",
        "--check",
        "--tags=always",  # preflight (tagged always) and the roles' argument checks, nothing else
        extra_vars={
            "project_name": "ranker-metrics",
            "instance_type": "t3a.small",
            "instance_cpu_credits": "unlimited",
        },
    )

    check = result.output.split("Check that instance_type is an x86_64 type and takes instance_cpu_credits")
    assert len(check) == 2, result.output[-3000:]
    assert check[1].split("TASK [")[0].split("\n", 1)[1].strip().startswith("ok: [localhost]"), check[1][:1000]
    assert "Read the AWS account of the credentials" in check[1], "preflight went on to the account"


def ingress_of(aws, group_name):
    ec2 = aws.client("ec2")
    group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [group_name]}])["SecurityGroups"][0]
    rules = set()
    for permission in group["IpPermissions"]:
        for source in permission.get("IpRanges", []):
            rules.add((permission["FromPort"], source["CidrIp"]))
        for source in permission.get("Ipv6Ranges", []):
            rules.add((permission["FromPort"], source["CidrIpv6"]))
    return rules


def test_the_metrics_ports_are_open_to_monitoring_cidr_only_and_a_rerun_changes_nothing(run_playbook, aws):
    variables = {"project_name": "ranker-metrics", "ssh_admin_cidr": "10.213.0.0/16", "monitoring_cidr": "10.99.0.0/24"}

    first = run_playbook("playbooks/provision.yml", extra_vars=variables)
    assert first.returncode == 0, first.output[-3000:]
    assert ingress_of(aws, "ranker-metrics-api") == {
        (22, "10.213.0.0/16"),
        (11373, "0.0.0.0/0"),
        (11373, "::/0"),
        (11374, "10.99.0.0/24"),
        (9100, "10.99.0.0/24"),
    }

    again = run_playbook("playbooks/provision.yml", extra_vars=variables)
    assert again.returncode == 0, again.output[-3000:]
    assert again.recap["changed"] == 0, again.output[-4000:]
    # The stack read saw the group as the role asks for it: its module did not even run.
    assert "Open SSH to the admin network, the API port to everyone or the load balancer" not in again.output

    moved = run_playbook("playbooks/provision.yml", extra_vars={**variables, "monitoring_cidr": "10.98.0.5/32"})
    assert moved.returncode == 0, moved.output[-3000:]
    assert {(11374, "10.98.0.5/32"), (9100, "10.98.0.5/32")} <= ingress_of(aws, "ranker-metrics-api")
    assert not {(11374, "10.99.0.0/24"), (9100, "10.99.0.0/24")} & ingress_of(aws, "ranker-metrics-api")


def test_an_instance_whose_cpu_credits_differ_is_named_with_the_command_that_changes_them(run_playbook, aws):
    """ec2_instance sets the credit mode at launch only. The embedded AWS (moto 5.2) reports every
    instance as standard and cannot change a mode: asking for unlimited shows the run's handling of an
    existing instance that differs — read, compared, and named with the way out when it cannot be changed."""
    variables = {"project_name": "ranker-metrics", "ssh_admin_cidr": "10.213.0.0/16"}
    launched = run_playbook("playbooks/provision.yml", extra_vars=variables)
    assert launched.returncode == 0, launched.output[-3000:]
    ec2 = aws.client("ec2")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": ["ranker-metrics"]}])
    instance_id = reservations["Reservations"][0]["Instances"][0]["InstanceId"]

    dry = run_playbook(
        "playbooks/provision.yml", "--check", extra_vars={**variables, "instance_cpu_credits": "unlimited"}
    )
    assert dry.returncode == 0, dry.output[-3000:]
    assert (
        "changed: [localhost]"
        in dry.output.split("Set the CPU credit mode of the running burstable instances")[1][:400]
    )

    unlimited = run_playbook("playbooks/provision.yml", extra_vars={**variables, "instance_cpu_credits": "unlimited"})
    assert unlimited.returncode != 0
    assert f"Could not set CPU credits unlimited on {instance_id} (instance_cpu_credits)" in unlimited.text
    assert (
        f"aws ec2 modify-instance-credit-specification --instance-credit-specification "
        f"InstanceId={instance_id},CpuCredits=unlimited" in unlimited.text
    )

    # The instance's sshd listens on 22: a new ssh_port would close it in the group before anything moves
    # sshd. The run stops before the group changes, and names the port to keep.
    moved = run_playbook("playbooks/provision.yml", extra_vars={**variables, "ssh_port": 2222})
    assert moved.returncode != 0
    assert "ssh_port is 2222, but sshd on the 1 running instance(s) listens on 22," in moved.text, moved.output[-3000:]
    assert "Set ssh_port back to 22" in moved.text
    assert (22, "10.213.0.0/16") in ingress_of(aws, "ranker-metrics-api")
    assert not {rule for rule in ingress_of(aws, "ranker-metrics-api") if rule[0] == 2222}
