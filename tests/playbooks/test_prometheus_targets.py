"""Host metrics on a booted instance, and the Prometheus targets the controller writes for it.

One instance on a sandbox host (site.yml): node_exporter from the distribution's package answers on
9100 to the monitoring network (monitoring_cidr, here the admin network the controller is in), the file_sd
targets name both of the instance's targets with its id, zone and project, the summary says where the file
is, a rerun rewrites nothing, and a monitoring_cidr without the controller closes the port to it.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = "ranker-metrics"
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox")


def host_address(instance_id: str) -> str:
    return json.loads((STATE_DIR / "hosts" / f"{PROJECT}-{instance_id}" / "host.json").read_text())["address"]


def port_answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture
def stack(run_playbook, tmp_path):
    """run_playbook for this test's project, with the sandbox hosts; everything is torn down at the end."""
    run_playbook.use_dynamic_inventory(PROJECT)
    targets_file = tmp_path / "prometheus" / f"{PROJECT}.json"

    def run(playbook: str, *args: str, **extra_vars):
        variables = {"project_name": PROJECT, "prometheus_targets_file": str(targets_file), **extra_vars}
        return run_playbook(playbook, *args, extra_vars=variables, boot_hosts=True)

    run.targets_file = targets_file
    yield run
    torn_down = run("playbooks/teardown.yml", teardown_delete_data=True, ssh_admin_cidr="")
    assert torn_down.returncode == 0, torn_down.output[-3000:]


@pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts (systemd-nspawn) need root")
def test_node_exporter_answers_the_monitoring_network_and_the_targets_file_names_every_target(stack, aws):
    site = stack("site.yml")
    assert site.returncode == 0, site.output[-5000:]

    (instance,) = [
        i
        for r in aws.client("ec2").describe_instances(
            Filters=[
                {"Name": "tag:Project", "Values": [PROJECT]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]
        for i in r["Instances"]
    ]
    instance_id, zone = instance["InstanceId"], instance["Placement"]["AvailabilityZone"]
    address = host_address(instance_id)

    # The summary's contract line, and the file it names.
    assert f"Prometheus targets: {stack.targets_file}" in site.text
    labels = {"instance_id": instance_id, "zone": zone, "project": PROJECT}
    assert json.loads(stack.targets_file.read_text()) == [
        {"targets": [f"{address}:11374"], "labels": {"job": "coffee-ranker-api", **labels}},
        {"targets": [f"{address}:9100"], "labels": {"job": "node", **labels}},
    ]
    assert oct(stack.targets_file.stat().st_mode & 0o777) == "0o644"

    # node_exporter, from the package, with the useful collectors only, reached from the monitoring network.
    with urllib.request.urlopen(f"http://{address}:9100/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "node_uname_info" in metrics
    assert 'node_scrape_collector_success{collector="cpu"} 1' in metrics
    assert 'collector="hwmon"' not in metrics
    assert 'collector="zfs"' not in metrics
    # The API's own metrics, on their port, reached from the same network.
    with urllib.request.urlopen(f"http://{address}:11374/metrics", timeout=10) as response:
        api_metrics = response.read().decode()
    assert "coffee_ranker_build_info{" in api_metrics
    assert "coffee_ranker_http_requests_total{" in api_metrics  # the smoke test's requests were counted

    # A rerun of the summary rewrites nothing; a rerun of the configuration changes nothing on the host.
    verify = stack("playbooks/verify.yml")
    assert verify.returncode == 0, verify.output[-5000:]
    assert verify.recap["changed"] == 0, verify.output[-5000:]
    configure = stack("playbooks/configure.yml")
    assert configure.returncode == 0, configure.output[-5000:]
    assert configure.recaps[instance_id]["changed"] == 0, configure.output[-5000:]

    # A monitoring network the controller is not in: the host firewall closes both metrics ports to it.
    elsewhere = stack("playbooks/configure.yml", "--tags", "host_firewall", monitoring_cidr="172.31.0.0/16")
    assert elsewhere.returncode == 0, elsewhere.output[-5000:]
    assert not port_answers(address, 9100)
    assert not port_answers(address, 11374)
    assert port_answers(address, 11373), "the API port stays open to everyone"
