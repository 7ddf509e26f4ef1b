"""The host firewall's rules as ufw writes them in /etc/ufw/user.rules, for roles/host_firewall to compare."""

from __future__ import annotations

from plugin_files import load

host_firewall = load("plugins/filter/host_firewall.py", "host_firewall_filters")


def test_one_port_open_to_everyone_is_one_rule_per_address_family():
    # As `ufw allow proto tcp from ::/0 to any port 22` leaves them in user.rules and user6.rules
    # ("### tuple ### allow tcp 22 ::/0 any ::/0 in comment=...", read without prefix and comment).
    assert host_firewall.ufw_rules(22, ["0.0.0.0/0", "::/0"]) == {
        "0.0.0.0/0": "allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in",
        "::/0": "allow tcp 22 ::/0 any ::/0 in",
    }


def test_a_port_given_as_text_gives_the_same_rules():
    assert host_firewall.ufw_rules("11373", ["172.31.0.0/16"]) == host_firewall.ufw_rules(11373, ["172.31.0.0/16"])
    assert host_firewall.ufw_rules(11373, ["172.31.0.0/16"]) == {
        "172.31.0.0/16": "allow tcp 11373 0.0.0.0/0 any 172.31.0.0/16 in"
    }


def test_no_sources_no_rules():
    assert host_firewall.ufw_rules(22, []) == {}
    assert host_firewall.ufw_rules_by_port([9100, 9101], []) == {}
    assert host_firewall.ufw_rules_by_port([], ["10.0.0.0/8"]) == {}


def test_several_ports_are_keyed_by_port_and_source_in_order():
    rules = host_firewall.ufw_rules_by_port(["9101", 9100], ["10.1.0.0/16", "fd00::/8"])
    assert list(rules.items()) == [
        ("9101 10.1.0.0/16", "allow tcp 9101 0.0.0.0/0 any 10.1.0.0/16 in"),
        ("9101 fd00::/8", "allow tcp 9101 ::/0 any fd00::/8 in"),
        ("9100 10.1.0.0/16", "allow tcp 9100 0.0.0.0/0 any 10.1.0.0/16 in"),
        ("9100 fd00::/8", "allow tcp 9100 ::/0 any fd00::/8 in"),
    ]


def test_a_port_listed_twice_is_one_rule():
    assert host_firewall.ufw_rules_by_port([9100, 9100], ["10.0.0.0/8"]) == {
        "9100 10.0.0.0/8": "allow tcp 9100 0.0.0.0/0 any 10.0.0.0/8 in"
    }


def test_the_filters_are_registered_under_their_names():
    assert host_firewall.FilterModule().filters() == {
        "ufw_rules": host_firewall.ufw_rules,
        "ufw_rules_by_port": host_firewall.ufw_rules_by_port,
    }
