"""One stack of two instances on sandbox hosts, made through interrupted runs, then used for what needs
booted hosts: the metrics and their scrape targets, a crashed service, a teardown to nothing. Its photos go
through CloudFront (media_cdn): the API's photo URLs name the distribution, and verify.yml's smoke test
fetches a photo through it (tests/playbooks/test_media_cdn.py has the AWS side without hosts).

The tests share the stack (one embedded AWS of the module's, hosts booted once) and run in this order; a
test whose stack an earlier one failed to make makes it itself. Every sandbox host is stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import NEEDS_SANDBOX_HOSTS

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sandbox"))  # the sandbox tools' own package, for their SSH client options
from machines.ssh import ssh_command  # noqa: E402

VENV_BIN = Path(sys.executable).parent
HOSTS = REPO / "sandbox" / "hosts"
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox").resolve()
PROJECT = "ranker-fail"
INSTANCES = 2
API_PORT = 11373
API_METRICS_PORT = 11374
NODE_EXPORTER_PORT = 9100
UNIT = "coffee-ranker-api"

# The last task of provisioning that launches instances, and the one that installs the service.
LAUNCH_TASK = "Launch API instances into their subnets"
INSTALL_TASK = "Install the service and its locked dependencies from the wheelhouse alone"

pytestmark = NEEDS_SANDBOX_HOSTS


def sandbox_hosts() -> dict[str, dict]:
    """This project's running sandbox hosts, by instance id."""
    listed = json.loads(subprocess.run([str(HOSTS), "list"], capture_output=True, text=True, check=True).stdout)
    prefix = f"{PROJECT}-"
    return {h["name"].removeprefix(prefix): h for h in listed if h["name"].startswith(prefix)}


def host_state_dirs() -> list[str]:
    hosts_dir = STATE_DIR / "hosts"
    return sorted(p.name for p in hosts_dir.glob(f"{PROJECT}-*")) if hosts_dir.is_dir() else []


def running_instances(aws) -> list[str]:
    reservations = aws.client("ec2").describe_instances(
        Filters=[{"Name": "tag:Project", "Values": [PROJECT]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )["Reservations"]
    return sorted(i["InstanceId"] for r in reservations for i in r["Instances"])


@pytest.fixture(scope="module")
def site(module_playbook_runner, embedded_aws, tmp_path_factory):
    """The module's runner with the sandbox's dynamic inventory, as `-i inventory/sandbox` has it: day-2
    playbooks (verify.yml) find the instances by tag. Tears the project down at the end, whatever
    happened, and stops any host of the project that is still running."""
    run_playbook, aws = module_playbook_runner, embedded_aws
    run_playbook.use_dynamic_inventory(PROJECT)
    targets_file = tmp_path_factory.mktemp("prometheus") / f"{PROJECT}.json"
    common = {
        "project_name": PROJECT,
        "api_instance_count": INSTANCES,
        "prometheus_targets_file": str(targets_file),
        "media_cdn": True,
    }

    def run(playbook: str, *args: str, **extra_vars):
        return run_playbook(playbook, *args, extra_vars={**common, **extra_vars}, boot_hosts=True)

    def interrupted(after_task: str, signal_number: int, **extra_vars) -> str:
        """Run site.yml and send the signal to its whole process group (as Ctrl-C in a terminal, or a CI
        runner killing a cancelled job) as soon as the task `after_task` has finished on every host."""
        variables = {
            "controller_secrets_dir": str(run_playbook.secrets),
            "machines_role": "sandbox_hosts",
            **common,
            **extra_vars,
        }
        command = [str(VENV_BIN / "ansible-playbook"), "-i", str(run_playbook.inventory), str(REPO / "site.yml")]
        command += ["-e", json.dumps(variables)]
        env = dict(os.environ, SANDBOX_AWS_ENDPOINT=aws.endpoint, ANSIBLE_NOCOLOR="1", PYTHONUNBUFFERED="1")
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # As in a terminal: a job started in the background by a non-interactive shell (a CI runner,
            # `nohup ... &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        output, in_task, signalled = [], False, False
        try:
            for line in process.stdout:
                output.append(line)
                starts_next = line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY [", "PLAY RECAP"))
                if in_task and starts_next:
                    os.killpg(process.pid, signal_number)
                    signalled = True
                    break
                # "TASK [role : name]": the role's argument check mentions the name too, so match all of it.
                if line.startswith("TASK [") and line.split(" : ", 1)[-1].startswith(f"{after_task}]"):
                    in_task = True
            # A Ctrl-C that lands while ansible-playbook forks a worker (it does so right after printing
            # a task's banner, exactly when this sends it) can be lost: the KeyboardInterrupt is raised
            # inside an at-fork hook of the logging module, where Python swallows it ("Exception
            # ignored in ... _releaseLock"), and the run goes on. An operator presses Ctrl-C again;
            # so does this, after a grace period in which a heeded interrupt ends the run.
            for _ in range(3):
                try:
                    output.append(process.communicate(timeout=3 if signal_number == signal.SIGINT else 120)[0])
                    break
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal_number)
            else:
                output.append(process.communicate(timeout=120)[0])
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        text = "".join(output)
        assert signalled, f"site.yml ended before the task '{after_task}' finished:\n{text[-3000:]}"
        assert process.returncode != 0, text[-3000:]
        return text

    def converged() -> None:
        """Make the stack unless an earlier test left it running."""
        if len(running_instances(aws)) != INSTANCES or len(sandbox_hosts()) != INSTANCES:
            made = run("site.yml")
            assert made.returncode == 0, made.output[-3000:]

    run.interrupted = interrupted
    run.converged = converged
    run.targets_file = targets_file
    run.secrets = run_playbook.secrets
    yield run

    # test_teardown_leaves_nothing tears the stack down; this, only what a failed test left.
    left = (
        any(aws.project_resources(PROJECT).values())
        or f"{PROJECT}-data" in aws.client("dynamodb").list_tables()["TableNames"]
    )
    torn_down = run("playbooks/teardown.yml", teardown_delete_data=True) if left else None
    for instance_id in sandbox_hosts():
        subprocess.run([str(HOSTS), "stop", f"{PROJECT}-{instance_id}"], check=False)
    assert torn_down is None or torn_down.returncode == 0, torn_down.output[-3000:]


def assert_converged(aws, instance_count: int) -> None:
    """Exactly the wanted instances, each with its sandbox host, and every other resource once."""
    instances = running_instances(aws)
    assert len(instances) == instance_count, instances
    resources = aws.project_resources(PROJECT)
    assert sorted(resources["instances"]) == instances, "an instance is not running"
    assert sorted(sandbox_hosts()) == instances, "sandbox hosts do not match the instances"
    assert host_state_dirs() == sorted(f"{PROJECT}-{i}" for i in instances)
    for kind in ("security_groups", "key_pairs", "roles", "instance_profiles", "buckets"):
        assert len(resources[kind]) == 1, (kind, resources[kind])


def assert_nothing_left(aws) -> None:
    assert not any(aws.project_resources(PROJECT).values()), aws.project_resources(PROJECT)
    assert f"{PROJECT}-data" not in aws.client("dynamodb").list_tables()["TableNames"]
    assert sandbox_hosts() == {}
    assert host_state_dirs() == []


def test_site_converges_after_interrupted_runs(site, embedded_aws):
    aws = embedded_aws
    # 1. Ctrl-C right after the instances were launched, before they got sandbox hosts.
    site.interrupted(LAUNCH_TASK, signal.SIGINT)
    assert len(running_instances(aws)) == INSTANCES
    assert sandbox_hosts() == {}

    # 2. The next run launches nothing more; its job is killed (SIGKILL: no handler of Ansible's runs)
    # right after the service was installed.
    site.interrupted(INSTALL_TASK, signal.SIGKILL)
    assert_converged(aws, INSTANCES)

    # 3. The next run completes: configured, verified, and no orphan of the interrupted runs.
    completed = site("site.yml")
    assert completed.returncode == 0, completed.output[-3000:]
    assert_converged(aws, INSTANCES)


def host_address(instance_id: str) -> str:
    return sandbox_hosts()[instance_id]["address"]


def port_answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def test_a_rerun_changes_nothing_and_the_metrics_answer_the_monitoring_network_at_the_targets_written(
    site, embedded_aws
):
    aws = embedded_aws
    site.converged()
    # After the interrupted runs too, a rerun changes nothing on any host.
    rerun = site("site.yml")
    assert rerun.returncode == 0, rerun.output[-5000:]
    assert {host: recap["changed"] for host, recap in rerun.recaps.items() if host.startswith("i-")} == dict.fromkeys(
        running_instances(aws), 0
    ), rerun.output[-5000:]

    # The summary's contract lines: the photos through the distribution (whose edge the smoke test fetched
    # its photo from: the API builds photo URLs on it), and the targets file, each instance's two targets
    # sorted by id.
    listed = aws.client("cloudfront").list_distributions()["DistributionList"]["Items"]
    (distribution,) = [d for d in listed if d["Comment"] == f"{PROJECT} media"]
    edge = json.loads((STATE_DIR / "cloudfront" / f"{distribution['Id']}.json").read_text())["url"]
    assert f"Media: {edge}/media/ (CloudFront distribution {distribution['Id']}" in rerun.text
    assert f"Prometheus targets: {site.targets_file}" in rerun.text
    reservations = aws.client("ec2").describe_instances(InstanceIds=running_instances(aws))["Reservations"]
    zones = {i["InstanceId"]: i["Placement"]["AvailabilityZone"] for r in reservations for i in r["Instances"]}
    expected = []
    for instance_id in sorted(zones):
        labels = {"instance_id": instance_id, "zone": zones[instance_id], "project": PROJECT}
        address = host_address(instance_id)
        expected += [
            {"targets": [f"{address}:{API_METRICS_PORT}"], "labels": {"job": "coffee-ranker-api", **labels}},
            {"targets": [f"{address}:{NODE_EXPORTER_PORT}"], "labels": {"job": "node", **labels}},
        ]
    assert json.loads(site.targets_file.read_text()) == expected
    assert oct(site.targets_file.stat().st_mode & 0o777) == "0o644"

    for instance_id in zones:
        address = host_address(instance_id)
        # node_exporter, from the package, with the useful collectors only, reached from the monitoring network.
        with urllib.request.urlopen(f"http://{address}:{NODE_EXPORTER_PORT}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert "node_uname_info" in metrics
        assert 'node_scrape_collector_success{collector="cpu"} 1' in metrics
        assert 'collector="hwmon"' not in metrics
        assert 'collector="zfs"' not in metrics
        # The API's own metrics, on their port, reached from the same network.
        with urllib.request.urlopen(f"http://{address}:{API_METRICS_PORT}/metrics", timeout=10) as response:
            api_metrics = response.read().decode()
        assert "coffee_ranker_build_info{" in api_metrics
        assert "coffee_ranker_http_requests_total{" in api_metrics  # the smoke test's requests were counted

    # A monitoring network the controller is not in: the host firewall closes both metrics ports to it.
    elsewhere = site("playbooks/configure.yml", "--tags", "host_firewall", monitoring_cidr="172.31.0.0/16")
    assert elsewhere.returncode == 0, elsewhere.output[-5000:]
    address = host_address(sorted(zones)[0])
    assert not port_answers(address, NODE_EXPORTER_PORT)
    assert not port_answers(address, API_METRICS_PORT)
    assert port_answers(address, API_PORT), "the API port stays open to everyone"


def ssh(host: dict, key: Path, command: str) -> subprocess.CompletedProcess:
    arguments = ssh_command(host["user"], host["address"], host.get("port", 22), key, command, 20)
    return subprocess.run(arguments, capture_output=True, text=True, timeout=60)


def test_systemd_restarts_a_killed_service_and_verify_passes_again(site):
    site.converged()
    instance_id, host = sorted(sandbox_hosts().items())[0]
    key = site.secrets / "ssh" / PROJECT

    def main_pid() -> str:
        result = ssh(host, key, f"systemctl show --property=MainPID --value {UNIT}")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    killed_pid = main_pid()
    assert killed_pid not in ("", "0")
    killed = ssh(host, key, f"sudo systemctl kill --signal=KILL {UNIT}")
    assert killed.returncode == 0, killed.stderr

    deadline = time.monotonic() + 60
    while True:
        pid = main_pid()
        try:
            with urllib.request.urlopen(f"http://{host['address']}:{API_PORT}/healthz", timeout=2) as answer:
                healthy = answer.status == 200
        except OSError:
            healthy = False
        if pid not in ("", "0", killed_pid) and healthy:
            break
        assert time.monotonic() < deadline, f"the service did not come back within 60 s (MainPID {pid})"
        time.sleep(0.5)
    restarts = ssh(host, key, f"systemctl show --property=NRestarts --value {UNIT}").stdout.strip()
    assert int(restarts) >= 1

    # verify.yml alone finds the instances through the dynamic inventory, as an operator runs it.
    verified = site("playbooks/verify.yml")
    assert verified.returncode == 0, verified.output[-3000:]
    assert verified.recaps[instance_id]["failed"] == 0, verified.output[-3000:]
    assert verified.recaps[instance_id]["ok"] > 0, verified.output[-3000:]
    assert verified.recap["changed"] == 0, "the targets file was rewritten"


def test_teardown_leaves_nothing(site, embedded_aws):
    torn_down = site("playbooks/teardown.yml", teardown_delete_data=True)
    assert torn_down.returncode == 0, torn_down.output[-3000:]
    assert_nothing_left(embedded_aws)
