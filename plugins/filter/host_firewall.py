# Copyright: Coffee Shop Ranker operations team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host firewall's rules as ufw writes them, for roles/host_firewall to compare with what it reads.

ufw keeps each rule in /etc/ufw/user.rules (user6.rules for IPv6) as a "### tuple ###" line; the role
reads those lines without the prefix and the comment (tasks/read_state.yml), as
"allow tcp <port> <any address of the family> any <source> in". A rule whose string is missing from the
read is added, and a read rule that is none of these strings makes the role reset the rule set.
"""


def _rule(port, source):
    # "to" is the address family's any: ufw files an IPv6 source's rule under ::/0.
    destination = "::/0" if ":" in str(source) else "0.0.0.0/0"
    return f"allow tcp {port} {destination} any {source} in"


def ufw_rules(port, sources):
    """One TCP port open to each source network, as {source: rule string}."""
    return {source: _rule(port, source) for source in sources}


def ufw_rules_by_port(ports, sources):
    """Several TCP ports, each open to each source network, as {"<port> <source>": rule string}."""
    return {f"{port} {source}": _rule(port, source) for port in ports for source in sources}


class FilterModule:
    def filters(self):
        return {
            "ufw_rules": ufw_rules,
            "ufw_rules_by_port": ufw_rules_by_port,
        }
