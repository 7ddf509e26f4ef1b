"""The security group's rules, as roles/security_group asks for them and as roles/preflight reads them.

The two normalisations (roles cannot share module_utils) must give the same strings for the same group,
or the role's module would run on every rerun (or, worse, be skipped while the group differs).
"""

from __future__ import annotations

from plugin_files import load

rule_strings = load("plugins/filter/rules.py", "security_group_rules").rule_strings
permission_strings = load("plugins/modules/aws_account_facts.py", "aws_account_facts").permission_strings

SSH_RULE = {"proto": "tcp", "ports": [22], "cidr_ip": "203.0.113.7/32", "rule_desc": "SSH from the admin network"}
SSH_PERMISSION = {
    "IpProtocol": "tcp",
    "FromPort": 22,
    "ToPort": 22,
    "IpRanges": [{"CidrIp": "203.0.113.7/32", "Description": "SSH from the admin network"}],
}


def test_the_api_open_to_everyone_reads_back_the_same():
    rules = [
        SSH_RULE,
        {"proto": "tcp", "ports": [11373], "cidr_ip": "0.0.0.0/0", "rule_desc": "Coffee Ranker API"},
        {"proto": "tcp", "ports": [11373], "cidr_ipv6": "::/0", "rule_desc": "Coffee Ranker API"},
    ]
    permissions = [
        SSH_PERMISSION,
        {
            "IpProtocol": "tcp",
            "FromPort": 11373,
            "ToPort": 11373,
            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "Coffee Ranker API"}],
            "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "Coffee Ranker API"}],
        },
    ]
    assert rule_strings(rules) == permission_strings(permissions)


def test_the_api_open_to_the_load_balancers_group_only_reads_back_the_same():
    rules = [
        SSH_RULE,
        {"proto": "tcp", "ports": [11373], "group_id": "sg-0123456789abcdef0", "rule_desc": "API from the LB"},
    ]
    permissions = [
        SSH_PERMISSION,
        {
            "IpProtocol": "tcp",
            "FromPort": 11373,
            "ToPort": 11373,
            "UserIdGroupPairs": [
                {"GroupId": "sg-0123456789abcdef0", "UserId": "123456789012", "Description": "API from the LB"}
            ],
        },
    ]
    assert rule_strings(rules) == permission_strings(permissions)
    # ...and differs from the group open to everyone, so that a switch of api_load_balancer runs the module.
    assert "tcp 11373-11373 0.0.0.0/0 Coffee Ranker API" not in rule_strings(rules)


def metrics_permission(port: int, cidr: str) -> dict:
    description = "Prometheus metrics from the monitoring network"
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "IpRanges": [{"CidrIp": cidr, "Description": description}],
    }


METRICS_RULE = {
    "proto": "tcp",
    "ports": [11374, 9100],
    "cidr_ip": "10.20.0.0/16",
    "rule_desc": "Prometheus metrics from the monitoring network",
}


def test_both_metrics_ports_in_one_rule_read_back_as_aws_holds_them_one_permission_per_port():
    rules = [SSH_RULE, METRICS_RULE]
    permissions = [SSH_PERMISSION, metrics_permission(9100, "10.20.0.0/16"), metrics_permission(11374, "10.20.0.0/16")]

    assert rule_strings(rules) == permission_strings(permissions)
    assert "tcp 9100-9100 10.20.0.0/16 Prometheus metrics from the monitoring network" in rule_strings(rules)


def test_a_changed_monitoring_cidr_or_a_missing_metrics_port_differs_so_the_module_runs():
    wanted = rule_strings([SSH_RULE, METRICS_RULE])

    moved = [SSH_PERMISSION, metrics_permission(9100, "10.30.0.0/16"), metrics_permission(11374, "10.30.0.0/16")]
    one_port = [SSH_PERMISSION, metrics_permission(11374, "10.20.0.0/16")]
    assert permission_strings(moved) != wanted
    assert permission_strings(one_port) != wanted
