# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The group's rules as roles/preflight reads them from AWS, to tell whether the group needs its module."""


def rule_strings(rules):
    """ec2_security_group rules as sorted "proto from-to source description" strings, one per port and source.

    The same form as aws_account_facts (roles/preflight) gives IpPermissions, so that the two compare
    equal exactly when the group holds these rules and no other.
    """
    strings = []
    for rule in rules:
        sources = []
        for key in ("cidr_ip", "cidr_ipv6", "group_id"):
            value = rule.get(key) or []
            sources += [value] if isinstance(value, str) else list(value)
        for port in rule.get("ports") or []:
            low, _dash, high = str(port).partition("-")
            for source in sources:
                parts = [rule["proto"], f"{low}-{high or low}", source, rule.get("rule_desc") or ""]
                strings.append(" ".join(part for part in parts if part))
    return sorted(strings)


class FilterModule:
    def filters(self):
        return {"rule_strings": rule_strings}
