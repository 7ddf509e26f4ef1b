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


class FilterModule:
    def filters(self):
        return {"bucket_name_problems": bucket_name_problems, "cidr_problems": cidr_problems}
