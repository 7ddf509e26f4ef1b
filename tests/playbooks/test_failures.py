"""The site survives failures: an interrupted run (Ctrl-C or a killed job) and a crashed service.

These tests run the whole site.yml on sandbox hosts (root, systemd-nspawn) against an embedded AWS of
their own, a few minutes in all. Every sandbox host they boot is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sandbox"))  # the sandbox tools' own package, for their SSH client options
from machines.ssh import ssh_command  # noqa: E402

VENV_BIN = Path(sys.executable).parent
HOSTS = REPO / "sandbox" / "hosts"
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or REPO / ".sandbox").resolve()
PROJECT = "ranker-fail"
INSTANCES = 2
API_PORT = 11373
UNIT = "coffee-ranker-api"

# The last task of provisioning that launches instances, and the one that installs the service.
LAUNCH_TASK = "Launch API instances into their subnets"
INSTALL_TASK = "Install the service and its locked dependencies from the wheelhouse, with no package index"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts need root (mounts, namespaces, iptables)"),
    pytest.mark.skipif(
        shutil.which("systemd-nspawn") is None, reason="systemd-nspawn is missing: run sandbox/install-host-deps"
    ),
]


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


@pytest.fixture
def site(run_playbook, aws):
    """run_playbook with the sandbox's dynamic inventory, as `-i inventory/sandbox` has it: day-2
    playbooks (verify.yml) find the instances by tag. Tears the project down at the end, whatever
    happened, and stops any host of the project that is still running."""
    run_playbook.use_dynamic_inventory(PROJECT)

    def run(playbook: str, **extra_vars):
        return run_playbook(playbook, extra_vars={"project_name": PROJECT, **extra_vars}, boot_hosts=True)

    def interrupted(after_task: str, signal_number: int, **extra_vars) -> str:
        """Run site.yml and send the signal to its whole process group (as Ctrl-C in a terminal, or a CI
        runner killing a cancelled job) as soon as the task `after_task` has finished on every host."""
        variables = {
            "controller_secrets_dir": str(run_playbook.secrets),
            "machines_role": "sandbox_hosts",
            "project_name": PROJECT,
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

    run.interrupted = interrupted
    yield run

    torn_down = run("playbooks/teardown.yml", teardown_delete_data=True)
    for instance_id in sandbox_hosts():
        subprocess.run([str(HOSTS), "stop", f"{PROJECT}-{instance_id}"], check=False)
    assert torn_down.returncode == 0, torn_down.output[-3000:]


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


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_site_converges_after_interrupted_runs_and_tears_down_to_nothing(site, aws, signal_number):
    # 1. Interrupted right after the instances were launched, before they got sandbox hosts.
    site.interrupted(LAUNCH_TASK, signal_number, api_instance_count=INSTANCES)
    assert len(running_instances(aws)) == INSTANCES
    assert sandbox_hosts() == {}

    # 2. The next run launches nothing more; it is interrupted right after installing the service.
    site.interrupted(INSTALL_TASK, signal_number, api_instance_count=INSTANCES)
    assert_converged(aws, INSTANCES)

    # 3. The next run completes: configured, verified, and no orphan of the interrupted runs.
    completed = site("site.yml", api_instance_count=INSTANCES)
    assert completed.returncode == 0, completed.output[-3000:]
    assert_converged(aws, INSTANCES)

    torn_down = site("playbooks/teardown.yml", teardown_delete_data=True)
    assert torn_down.returncode == 0, torn_down.output[-3000:]
    assert_nothing_left(aws)


def ssh(host: dict, key: Path, command: str) -> subprocess.CompletedProcess:
    arguments = ssh_command(host["user"], host["address"], host.get("port", 22), key, command, 20)
    return subprocess.run(arguments, capture_output=True, text=True, timeout=60)


def test_systemd_restarts_a_killed_service_and_verify_passes_again(site, run_playbook):
    converged = site("site.yml")
    assert converged.returncode == 0, converged.output[-3000:]
    [(instance_id, host)] = sandbox_hosts().items()
    key = run_playbook.secrets / "ssh" / PROJECT

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

    # verify.yml alone finds the instance through the dynamic inventory, as an operator runs it.
    verified = site("playbooks/verify.yml")
    assert verified.returncode == 0, verified.output[-3000:]
    recap = next(line for line in verified.output.splitlines() if line.startswith(instance_id))
    counts = {key: int(value) for key, value in (part.split("=") for part in recap.split()[2:])}
    assert counts["failed"] == 0, recap
    assert counts["ok"] > 0, recap
