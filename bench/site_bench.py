"""Benchmark of site.yml on the sandbox: cold and no-op runs, tuned vs stock Ansible, and scale-out.

Prints two tables. Everything runs against an embedded AWS of its own on a free loopback port, with a
project name of its own, and is torn down at the end (sandbox hosts included).

  python bench/site_bench.py [--scale 1,4,8] [--skip-stock]

Figures to compare with the issue's targets: cold <= 60 s, rerun <= 12 s, tuned >= 2x faster than
stock, time(8)/time(1) <= 2 (on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROJECT = "ranker-bench"

# Stock Ansible: no pipelining, a new SSH connection per task, facts gathered by every play.
STOCK_SETTINGS = {
    "ANSIBLE_PIPELINING": "False",
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
    "ANSIBLE_GATHERING": "implicit",
    "ANSIBLE_CACHE_PLUGIN": "memory",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sandbox:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.inventory = workdir / "inventory"
        self.inventory.mkdir()
        (self.inventory / "group_vars").symlink_to(REPO / "inventory" / "sandbox" / "group_vars")
        # The dynamic inventory of the sandbox, on this embedded AWS and project: configure.yml alone finds
        # the instances that an earlier provision.yml run launched.
        dynamic = (REPO / "inventory" / "sandbox" / "aws_ec2.yml").read_text()
        dynamic = dynamic.replace("http://127.0.0.1:5000", self.endpoint)
        (self.inventory / "aws_ec2.yml").write_text(
            dynamic.replace("tag:Project: coffee-ranker", f"tag:Project: {PROJECT}")
        )
        self.secrets = workdir / "secrets"
        self.server = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            env=dict(os.environ, MOTO_AMIS_PATH=str(REPO / "sandbox" / "amis.json")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("the embedded AWS did not start")

    def playbook(self, playbook: str, settings: dict | None = None, **extra_vars) -> tuple[float, int, str]:
        """Run a playbook; return (seconds, tasks run, output). self.controller_cpu: its CPU seconds."""
        variables = {"project_name": PROJECT, "controller_secrets_dir": str(self.secrets), **extra_vars}
        env = dict(os.environ, SANDBOX_AWS_ENDPOINT=self.endpoint, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        env["PATH"] = f"{BIN}:{env['PATH']}"
        env.update(settings or {})
        command = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), str(REPO / playbook)]
        command += ["-e", json.dumps(variables)]
        started, children_before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        elapsed, children_after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        # ansible-playbook, its workers and what they ran on the controller (modules, ssh clients), not
        # the sandbox hosts, whose processes are not its children (nor the detached ControlPersist
        # masters: a slight undercount).
        self.controller_cpu = sum(
            getattr(children_after, field) - getattr(children_before, field) for field in ("ru_utime", "ru_stime")
        )
        if done.returncode != 0:
            raise SystemExit(f"{playbook} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
        tasks = len(re.findall(r"^TASK \[", done.stdout, flags=re.MULTILINE))
        return elapsed, tasks, done.stdout

    def teardown(self) -> None:
        self.playbook("playbooks/teardown.yml", teardown_delete_data=True)

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=10)


def cpu_seconds() -> tuple[float, float]:
    """Machine-wide (busy, iowait) CPU seconds since boot, from /proc/stat."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / ticks, iowait / ticks


def changed_total(output: str) -> int:
    return sum(int(n) for n in re.findall(r"changed=(\d+)", output))


def site_runs(sandbox: Sandbox, label: str, settings: dict | None) -> list[tuple]:
    sandbox.teardown()
    rows = []
    for run in ("cold (new instance)", "no-op rerun"):
        seconds, tasks, output = sandbox.playbook("site.yml", settings)
        rows.append((label, run, seconds, tasks, changed_total(output)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="1,4,8", help="host counts for the configure scale-out")
    parser.add_argument("--skip-stock", action="store_true", help="only the tuned settings")
    arguments = parser.parse_args()
    counts = [int(n) for n in arguments.scale.split(",")]

    with tempfile.TemporaryDirectory(prefix="site-bench-") as workdir:
        sandbox = Sandbox(Path(workdir))
        try:
            rows = site_runs(sandbox, "tuned (ansible.cfg)", None)
            if not arguments.skip_stock:
                rows += site_runs(sandbox, "stock Ansible", STOCK_SETTINGS)
            scale = []
            for count in counts:
                sandbox.teardown()
                sandbox.playbook("playbooks/provision.yml", api_instance_count=count)
                sandbox.playbook("playbooks/wait_for_ssh.yml", api_instance_count=count)
                busy_before, iowait_before = cpu_seconds()
                seconds, _, _ = sandbox.playbook("playbooks/configure.yml", api_instance_count=count)
                busy_after, iowait_after = cpu_seconds()
                scale.append(
                    (count, seconds, busy_after - busy_before, iowait_after - iowait_before, sandbox.controller_cpu)
                )
        finally:
            sandbox.teardown()
            sandbox.stop()

    print(f"\nsite.yml on the sandbox ({os.cpu_count()} cores)")
    print(f"{'settings':<22}{'run':<22}{'wall s':>8}{'tasks':>7}{'changed':>9}")
    for label, run, seconds, tasks, changed in rows:
        print(f"{label:<22}{run:<22}{seconds:>8.1f}{tasks:>7}{changed:>9}")
    if not arguments.skip_stock:
        for index, run in enumerate(("cold", "rerun")):
            print(f"stock/tuned {run}: {rows[index + 2][2] / rows[index][2]:.2f}x")

    # The controller and every sandbox host share this machine's cores, so N hosts cannot take less
    # wall time than the CPU time they need divided by the cores: that floor is printed beside the
    # figure, for N hosts as N times what one host needed. The controller's own share is printed too:
    # where each host has CPUs of its own (EC2), only that share competes for the controller's cores.
    cores = os.cpu_count() or 1
    print(f"\nconfigure.yml on N fresh sandbox hosts (in parallel), {cores} cores shared by all")
    print(
        f"{'hosts':>6}{'wall s':>9}{'time(N)/time(1)':>17}{'CPU s':>8}{'iowait s':>10}{'CPU floor s':>13}"
        f"{'controller CPU s':>18}"
    )
    one_host_cpu = scale[0][2]
    for count, seconds, busy, iowait, controller in scale:
        floor = count * one_host_cpu / cores
        print(
            f"{count:>6}{seconds:>9.1f}{seconds / scale[0][1]:>17.2f}{busy:>8.1f}{iowait:>10.1f}{floor:>13.1f}"
            f"{controller:>18.1f}"
        )


if __name__ == "__main__":
    main()
