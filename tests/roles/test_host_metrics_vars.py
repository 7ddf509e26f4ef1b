"""roles/host_metrics starts node_exporter with flags its release's package knows, also on releases the
sandbox cannot boot (Ubuntu): the role's own choice (tasks/flags.yml) runs with each release's facts.

Ubuntu 18.04 ships node_exporter 0.15.2, 20.04 0.18.1, Debian 11 1.1.2: no --collector.disable-defaults,
so the collectors an EC2 instance lacks are switched off by name. Ubuntu 22.04 (1.3.1), 24.04 (1.7.0),
Debian 12 (1.5.0) and 13 start from no collector and name the useful ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playbook_on_localhost import run_on_localhost

PLAYBOOK = Path(__file__).with_name("render_host_metrics_flags.yml")

RELEASES = {
    # (distribution, version, major version): whether the release's node_exporter has disable-defaults
    ("Ubuntu", "18.04", "18"): False,
    ("Ubuntu", "20.04", "20"): False,
    ("Ubuntu", "22.04", "22"): True,
    ("Ubuntu", "24.04", "24"): True,
    ("Debian", "11.9", "11"): False,
    ("Debian", "12.5", "12"): True,
    ("Debian", "13.1", "13"): True,
}

# Names that exist in every node_exporter from 0.15 to 1.9: an unknown --no-collector.<name> stops it.
COLLECTORS_OF_EVERY_VERSION = {
    "arp", "bcache", "bonding", "conntrack", "cpu", "diskstats", "edac", "entropy", "filefd", "filesystem",
    "hwmon", "infiniband", "ipvs", "loadavg", "mdadm", "meminfo", "netdev", "netstat", "nfs", "nfsd",
    "sockstat", "stat", "textfile", "time", "timex", "uname", "vmstat", "wifi", "xfs", "zfs",
}  # fmt: skip


def flags_of(tmp_path, distribution, version, major):
    output = tmp_path / "flags.json"
    facts = {
        "ansible_distribution": distribution,
        "ansible_distribution_version": version,
        "ansible_distribution_major_version": major,
        "ansible_os_family": "Debian",
        "flags_output": str(output),
    }
    result = run_on_localhost(PLAYBOOK, facts)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(output.read_text())


@pytest.mark.parametrize(("release", "modern"), list(RELEASES.items()), ids=[f"{d}-{v}" for d, v, _ in RELEASES])
def test_each_release_gets_flags_its_node_exporter_knows(tmp_path, release, modern):
    flags = flags_of(tmp_path, *release)

    assert flags[0] == "--web.listen-address=:9100", "it listens on node_exporter_port, every address"
    assert all(flag.startswith("--") and " " not in flag and "\\" not in flag for flag in flags), flags
    if modern:
        assert "--collector.disable-defaults" in flags
        enabled = {f.removeprefix("--collector.") for f in flags if f.count(".") == 1 and "=" not in f}
        assert {"cpu", "meminfo", "filesystem", "netdev", "loadavg", "systemd"} <= enabled
        assert not any(f.startswith("--no-collector.") for f in flags)
        units = next(f for f in flags if f.startswith("--collector.systemd.unit-include="))
        assert "coffee-ranker-api[.]service" in units
        assert "ssh[.]service" in units
    else:
        assert "--collector.disable-defaults" not in flags
        assert not any(f.startswith("--collector.systemd") for f in flags), "unit selection differs by version"
        off = {f.removeprefix("--no-collector.") for f in flags[1:]}
        assert off <= COLLECTORS_OF_EVERY_VERSION, off - COLLECTORS_OF_EVERY_VERSION
        assert {"hwmon", "infiniband", "zfs"} <= off


def test_only_ubuntu_18_04_switches_off_wifi_which_0_15_runs_by_default(tmp_path):
    assert "--no-collector.wifi" in flags_of(tmp_path, "Ubuntu", "18.04", "18")
    assert "--no-collector.wifi" not in flags_of(tmp_path, "Ubuntu", "20.04", "20")
