# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation rules for operator input that Jinja alone cannot express clearly.

Each filter returns a list of human sentences, one per broken rule; an empty list means valid.
"""

import ipaddress
import re

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET_CHARS = re.compile(r"^[a-z0-9.-]+$")
_IPV4_LIKE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problems(name):
    name = str(name)
    problems = []
    if not 3 <= len(name) <= 63:
        problems.append(f"must be 3 to 63 characters long (it has {len(name)})")
    if not _BUCKET_CHARS.match(name):
        problems.append("may contain only lowercase letters, digits, dots and hyphens")
    if not (name[:1].isalnum() and name[-1:].isalnum()):
        problems.append("must begin and end with a lowercase letter or digit")
    if ".." in name:
        problems.append("must not contain two adjacent dots")
    if _IPV4_LIKE.match(name):
        problems.append("must not be formatted as an IP address")
    problems += [f"must not start with the reserved prefix '{p}'" for p in _RESERVED_PREFIXES if name.startswith(p)]
    problems += [f"must not end with the reserved suffix '{s}'" for s in _RESERVED_SUFFIXES if name.endswith(s)]
    return problems


# RFC 5737: addresses for examples, never a real client's. A first run with one of them waits minutes
# for an SSH port that the security group keeps closed to the operator.
_DOCUMENTATION_NETWORKS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
_FIND_YOUR_ADDRESS = "your public address as a /32 (`curl -s https://checkip.amazonaws.com` prints it)"


def cidr_problems(cidr, allow_anywhere=False):
    cidr = "" if cidr is None else str(cidr).strip()
    if not cidr:
        return [f"is empty: set it to the network you administer from, such as {_FIND_YOUR_ADDRESS}"]
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as error:
        return [f"must be an IPv4 network in CIDR notation, such as {_FIND_YOUR_ADDRESS} ({error})"]
    if network.version == 6:
        # The instances get no IPv6 address in a default VPC: SSH from an IPv6 network could never
        # reach them, while the run would wait for it.
        return [
            "must be an IPv4 network: the instances are reached over their public IPv4 address; "
            f"use {_FIND_YOUR_ADDRESS}"
        ]
    if network.prefixlen == 0 and not allow_anywhere:
        return ["must not open SSH to the whole internet; set allow_ssh_from_anywhere: true to allow it"]
    if any(network.subnet_of(documentation) for documentation in _DOCUMENTATION_NETWORKS):
        return [
            "is a documentation range (RFC 5737) that no real client comes from, so SSH would never "
            f"reach the instances: set it to {_FIND_YOUR_ADDRESS}"
        ]
    return []


def monitoring_cidr_problems(cidr, allow_anywhere=False):
    """monitoring_cidr: where a Prometheus server scrapes the metrics ports from (IPv4, as SSH's)."""
    cidr = "" if cidr is None else str(cidr).strip()
    if not cidr:
        return ["is empty: set it to the network your Prometheus server scrapes from (default: ssh_admin_cidr)"]
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError as error:
        return [f"must be an IPv4 network in CIDR notation, such as 10.0.0.5/32 ({error})"]
    if network.version == 6:
        return ["must be an IPv4 network: the instances' metrics ports are reached over IPv4"]
    if network.prefixlen == 0 and not allow_anywhere:
        # Metrics tell anyone the host's versions, load and traffic.
        return [
            "must not open the metrics ports to the whole internet: set it to your Prometheus server's "
            "network (0.0.0.0/0 is accepted only with allow_ssh_from_anywhere: true)"
        ]
    return []


# Graviton (arm64) families: a1, and a generation digit followed by "g" (t4g, m6g, m6gd, c7gn, x2gd,
# im4gn, g5g, hpc7g, ...); mac2 instances are Apple silicon. Every other family is x86_64.
_ARM64_FAMILY = re.compile(r"^(a1|mac2.*|[a-z]+[0-9]+g[a-z]*)$")


def instance_type_problems(instance_type, cpu_credits, burstable_families):
    """instance_type and instance_cpu_credits, as sentences naming each variable."""
    instance_type = str(instance_type)
    family = instance_type.partition(".")[0]
    problems = []
    if _ARM64_FAMILY.match(family):
        problems.append(
            f"instance_type '{instance_type}' is an arm64 (Graviton) type, and the stack runs x86_64 types only "
            "(the image lookup and the service's wheelhouse are amd64): choose an x86_64 type such as t2.micro "
            "or t3.micro"
        )
    if cpu_credits not in ("standard", "unlimited"):
        problems.append(f"instance_cpu_credits '{cpu_credits}' must be standard or unlimited")
    elif cpu_credits == "unlimited" and family not in burstable_families:
        problems.append(
            f"instance_cpu_credits 'unlimited' applies to burstable types only "
            f"({', '.join(burstable_families)}), and instance_type '{instance_type}' is not one: "
            "set instance_cpu_credits to standard"
        )
    return problems


def own_port_problems(variable, value, lowest, taken):
    """A TCP port from `lowest` to 65535 that none of `taken` (port: whose) has: one listener per port."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        return [f"{variable} '{value}' must be a TCP port from {lowest} to 65535"]
    if not lowest <= port <= 65535:
        return [f"{variable} {port} must be a TCP port from {lowest} to 65535"]
    if port in taken:
        return [f"{variable} {port} must differ from {taken[port]}'s port ({port}): each port has one listener"]
    return []


def ssh_port_problems(ssh_port, api_port, metrics_port, node_exporter_port):
    """ssh_port: a TCP port of sshd's own, beside the API's, its metrics' and node_exporter's."""
    taken = {int(api_port): "api_port", int(metrics_port): "api_metrics_port", int(node_exporter_port): "node_exporter"}
    return own_port_problems("ssh_port", ssh_port, 1, taken)


def metrics_port_problems(metrics_port, api_port, node_exporter_port, ssh_port=22):
    """api_metrics_port: an unprivileged port of its own, beside the API's, SSH's and node_exporter's."""
    taken = {int(api_port): "api_port", int(ssh_port): "SSH", int(node_exporter_port): "node_exporter"}
    return own_port_problems("api_metrics_port", metrics_port, 1024, taken)


def media_cdn_problems(media_cdn, media_domain_name, partition, domain_name_pattern):
    """media_cdn and media_domain_name: a hostname only through CloudFront, and CloudFront only where AWS has it."""
    problems = []
    if media_domain_name and not re.match(domain_name_pattern, media_domain_name):
        problems.append(
            f"media_domain_name '{media_domain_name}' must be a DNS name such as media.example.com (lowercase "
            "labels of letters, digits and hyphens, two labels or more, no wildcard), or empty"
        )
    if media_domain_name and not media_cdn:
        problems.append(
            f"media_domain_name '{media_domain_name}' needs media_cdn=true: the hostname is the CloudFront "
            "distribution's alias, with its certificate"
        )
    if media_cdn and partition != "aws":
        problems.append(
            f"media_cdn=true is not available in the {partition} partition: CloudFront is not offered in "
            "GovCloud, and in China it needs an ICP-licensed domain and a setup of its own; set media_cdn=false"
        )
    return problems


def _as_int(value):
    """Jinja's `int` filter: a whole number, a number's whole part, or 0 for anything else ("inf" raises)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return 0


def _as_float(value):
    """Jinja's `float` filter: a number, or 0.0 for anything else."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def load_balancer_problems(load_balancer, domain_name, deregistration_delay, project_name, domain_name_pattern):
    """api_load_balancer (a bool) with api_domain_name, api_load_balancer_deregistration_delay and project_name.

    Each sentence ends with its full stop (the task joins them with a space).
    """
    problems = []
    if not 0 <= _as_int(deregistration_delay) <= 3600:
        problems.append(
            f"api_load_balancer_deregistration_delay {deregistration_delay} must be a number of seconds from 0 to 3600."
        )
    if domain_name != "" and not re.match(domain_name_pattern, domain_name):
        problems.append(
            f"api_domain_name '{domain_name}' must be a DNS name such as api.example.com (lowercase labels of "
            "letters, digits and hyphens, two labels or more, no wildcard), or empty."
        )
    if domain_name != "" and not load_balancer:
        problems.append(
            f"api_domain_name '{domain_name}' needs api_load_balancer=true: the certificate and the HTTPS "
            "listener live on the load balancer."
        )
    # The load balancer's and target group's names ("<project>-api") are 32 characters at most.
    if load_balancer and len(project_name) > 28:
        problems.append(
            f"project_name '{project_name}' must be 28 characters at most with api_load_balancer=true: the "
            f"load balancer and its target group are named '{project_name}-api', 32 at most."
        )
    return problems


_EMAIL_ADDRESS = r"^[^@ ]+@[^@ ]+[.][^@ .]+$"


def cost_problems(alert_email, monthly_budget_usd, billing_alarm_usd, noncurrent_version_expiry_days):
    """alert_email, the budget's and the billing alarm's amounts, and old photo versions' expiry.

    The amounts' upper bound catches a slipped digit and "inf"; each sentence ends with its full stop.
    """
    problems = []
    if alert_email != "" and not re.match(_EMAIL_ADDRESS, alert_email):
        problems.append(
            f"alert_email '{alert_email}' must look like an e-mail address, such as ops@example.com, or be "
            "empty (no alerts are e-mailed then)."
        )
    for name, amount in (("monthly_budget_usd", monthly_budget_usd), ("billing_alarm_usd", billing_alarm_usd)):
        if not 0 < _as_float(amount) < 1000000:
            problems.append(
                f"{name} '{amount}' must be a positive number of US dollars below 1000000, such as 5 or 12.50."
            )
    if not _as_int(noncurrent_version_expiry_days) >= 1:
        problems.append(
            f"media_noncurrent_version_expiry_days '{noncurrent_version_expiry_days}' must be a whole "
            "number of days, 1 or more."
        )
    return problems


class FilterModule:
    def filters(self):
        return {
            "bucket_name_problems": bucket_name_problems,
            "cidr_problems": cidr_problems,
            "monitoring_cidr_problems": monitoring_cidr_problems,
            "instance_type_problems": instance_type_problems,
            "ssh_port_problems": ssh_port_problems,
            "metrics_port_problems": metrics_port_problems,
            "media_cdn_problems": media_cdn_problems,
            "load_balancer_problems": load_balancer_problems,
            "cost_problems": cost_problems,
        }
