"""The sandbox tools' shared package (sandbox/machines): one CLI, one record format, one set of SSH options.

Nothing here boots, stops or cleans up a machine, nor needs root: the tools run only `list`, `address`,
`port` and `--help`, on records written into a temporary SANDBOX_STATE_DIR, and the rest are the
package's pure functions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sandbox_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "sandbox"))
from machines import cli, lifecycle, locking, nspawn, qemu, ssh, waiting  # noqa: E402
from machines.processes import process_start_time  # noqa: E402
from machines.records import Records, is_running  # noqa: E402

BACKENDS = [pytest.param(nspawn, id="hosts"), pytest.param(qemu, id="vms")]
SHARED_VERBS = {"image", "start", "stop", "list", "address", "cleanup"}


def verbs(backend) -> set[str]:
    parser = cli.build_parser(backend)
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    return set(commands.choices)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "arguments",
    [
        ["image", "--suite", "bullseye"],
        ["start", "web-1", "--public-key", "k.pub", "--suite", "trixie", "--instance-id", "i-1", "--wait-login", "k"],
        ["stop", "web-1", "web-2"],
        ["stop", "--all"],
        ["list"],
        ["address", "web-1"],
        ["cleanup"],
        ["cleanup", "--stale"],
    ],
)
def test_both_tools_take_the_same_verbs_and_flags(backend, arguments):
    parsed = cli.build_parser(backend).parse_args(arguments)
    assert parsed.command == arguments[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_names_must_be_hostnames(backend, capsys):
    with pytest.raises(SystemExit) as exit_status:
        cli.build_parser(backend).parse_args(["address", "Not_A_Hostname"])
    assert exit_status.value.code == 2
    assert f"a {backend.NOUN} name: lowercase letters" in capsys.readouterr().err


def test_each_tool_keeps_its_own_verbs():
    assert verbs(nspawn) == SHARED_VERBS | {"rootfs", "dns-forwarder", "loopback-relay", "supervise"}
    assert verbs(qemu) == SHARED_VERBS | {"port"}
    assert cli.build_parser(nspawn).parse_args(["rootfs", "--suite", "trixie"]).suite == "trixie"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 120.0),
        ({"SANDBOX_HOSTS_BOOT_TIMEOUT": "30"}, 30.0),
        ({"SANDBOX_BOOT_TIMEOUT": "45", "SANDBOX_HOSTS_BOOT_TIMEOUT": "30"}, 45.0),
        ({"SANDBOX_BOOT_TIMEOUT": "", "SANDBOX_HOSTS_BOOT_TIMEOUT": "30"}, 30.0),
        ({"SANDBOX_VM_BOOT_TIMEOUT": "30"}, 120.0),  # the other tool's variable
    ],
)
def test_one_boot_timeout_variable_and_the_older_ones_as_fallbacks(environ, expected):
    assert waiting.boot_timeout("SANDBOX_HOSTS_BOOT_TIMEOUT", 120, environ) == expected


def test_each_tool_keeps_its_default_boot_timeout():
    environ = {}
    assert waiting.boot_timeout("SANDBOX_HOSTS_BOOT_TIMEOUT", 120, environ) == 120
    assert waiting.boot_timeout("SANDBOX_VM_BOOT_TIMEOUT", 240, environ) == 240


def test_wait_until_polls_until_the_condition_holds_or_the_time_is_up():
    answers = iter([False, False, True])
    assert waiting.wait_until(lambda: next(answers), timeout=5, interval=0.01)
    assert not waiting.wait_until(lambda: False, timeout=0.05, interval=0.01)


def test_waiting_for_a_boot_ends_at_once_when_the_machine_is_gone():
    def gone():
        raise RuntimeError("exited")

    assert waiting.seconds_until_ready(lambda: True, lambda: None, timeout=5, interval=0.01) is not None
    assert waiting.seconds_until_ready(lambda: False, lambda: None, timeout=0.05, interval=0.01) is None
    with pytest.raises(RuntimeError, match="exited"):
        waiting.seconds_until_ready(lambda: False, gone, timeout=5, interval=0.01)


def this_process() -> dict:
    """A record's process identity that is alive for sure: this test's own process."""
    return {"pid": os.getpid(), "pid_start_time": process_start_time(os.getpid())}


def test_records_round_trip_and_only_live_processes_count_as_running(tmp_path):
    records = Records(tmp_path / "hosts")
    assert (records.all(), records.running(), records.names()) == ([], [], [])
    running = {"name": "web-1", "address": "10.213.1.2", "suite": "bookworm", **this_process()}
    stopped = {"name": "web-2", "address": "10.213.2.2", "suite": "bookworm", "pid": os.getpid(), "pid_start_time": "0"}
    for record in (running, stopped):
        records.machine_dir(record["name"]).mkdir(parents=True)
        records.write(record)
    (tmp_path / "hosts" / "killed-early").mkdir()
    assert records.read("web-1") == running
    assert json.loads((tmp_path / "hosts" / "web-1" / "host.json").read_text()) == running
    assert records.all() == [running, stopped]
    assert records.running() == [running]
    assert sorted(records.names()) == ["killed-early", "web-1", "web-2"]
    assert is_running(running)
    assert not is_running(stopped)
    assert not is_running({"name": "never-started"})


def test_stale_machines_are_torn_down_and_running_ones_spared(tmp_path):
    records = Records(tmp_path / "vms")
    for record in ({"name": "up", **this_process()}, {"name": "killed", "pid": 1, "pid_start_time": "0"}):
        records.machine_dir(record["name"]).mkdir(parents=True)
        records.write(record)
    (tmp_path / "vms" / "killed-early").mkdir()
    torn_down = []
    running = lifecycle.tear_down_stopped(records, lambda record: torn_down.append(record["name"]))
    assert [record["name"] for record in running] == ["up"]
    assert sorted(torn_down) == ["killed", "killed-early"]


@pytest.mark.parametrize("stale_only", [True, False])
def test_cleanup_stale_keeps_running_machines_and_full_cleanup_stops_them(tmp_path, stale_only):
    records = Records(tmp_path / "hosts")
    records.machine_dir("up").mkdir(parents=True)
    records.write({"name": "up", **this_process()})
    calls = []
    backend = SimpleNamespace(
        RECORDS=records,
        teardown=lambda record: calls.append(("teardown", record["name"])),
        reap_stale=lambda: calls.append(("reap_stale",)),
        after_cleanup=lambda stale: calls.append(("after_cleanup", stale)),
    )
    lifecycle.cleanup(backend, stale_only)
    expected = [("reap_stale",), ("after_cleanup", stale_only)]
    assert calls == (expected if stale_only else [("teardown", "up"), *expected])


def test_a_lock_held_elsewhere_is_not_waited_for_when_asked_not_to(tmp_path):
    lock = tmp_path / ".lock"
    with locking.locked(lock) as held:
        assert held
        with locking.locked(lock, wait=False) as also_held:
            assert not also_held
    with locking.locked(lock, wait=False) as held:
        assert held


def run_tool(tool: str, state_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SANDBOX_STATE_DIR": str(state_dir)}
    command = [str(REPO_ROOT / "sandbox" / tool), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment, cwd="/")


def write_record(state_dir: Path, kind: str, record: dict) -> None:
    (state_dir / kind / record["name"]).mkdir(parents=True)
    (state_dir / kind / record["name"] / "host.json").write_text(json.dumps(record))


def test_hosts_list_and_address_read_the_records_of_the_state_dir(tmp_path):
    host = {"name": "web-1", "user": "ubuntu", "suite": "bookworm", "slot": 1, "address": "10.213.1.2"}
    write_record(tmp_path, "hosts", {**host, **this_process()})
    write_record(tmp_path, "hosts", {**host, "name": "web-2", "pid": os.getpid(), "pid_start_time": "0"})
    listed = run_tool("hosts", tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    public = {"name": "web-1", "address": "10.213.1.2", "user": "ubuntu", "suite": "bookworm"}
    assert listed.stdout == json.dumps([public]) + "\n"
    assert run_tool("hosts", tmp_path, "address", "web-1").stdout == "10.213.1.2\n"
    stopped = run_tool("hosts", tmp_path, "address", "web-2")
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (1, "", "sandbox/hosts: web-2 is not running\n")


def test_vms_list_address_and_port_read_the_records_of_the_state_dir(tmp_path):
    vm = {"name": "vm-1", "address": "127.0.0.1", "port": 40022, "api_port": 40080, "user": "ubuntu"}
    write_record(tmp_path, "vms", {**vm, "suite": "trixie", **this_process()})
    listed = run_tool("vms", tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert list(json.loads(listed.stdout)[0].items()) == [*vm.items(), ("suite", "trixie")]
    assert run_tool("vms", tmp_path, "address", "vm-1").stdout == "127.0.0.1\n"
    assert run_tool("vms", tmp_path, "port", "vm-1").stdout == "40022\n"
    missing = run_tool("vms", tmp_path, "port", "vm-2")
    assert (missing.returncode, missing.stderr) == (1, "sandbox/vms: vm-2 is not running\n")
    assert not (tmp_path / "hosts").exists()


@pytest.mark.parametrize("tool", ["hosts", "vms"])
def test_the_tools_run_from_any_directory_and_show_their_help(tool, tmp_path):
    result = run_tool(tool, tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: sandbox/{tool} ")
    assert "SANDBOX_BOOT_TIMEOUT" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_tests_log_in_with_the_tools_own_ssh_options(monkeypatch):
    ran = []
    monkeypatch.setattr(sandbox_cli.subprocess, "run", lambda command, **kwargs: ran.append(command))
    monkeypatch.setattr(ssh, "run", lambda *command, **_: ran.append(list(command)) or SimpleNamespace(returncode=0))
    sandbox_cli.ssh({"name": "vm-1", "user": "ubuntu", "address": "127.0.0.1", "port": 40022}, Path("key"), "true")
    assert ssh.login_works("ubuntu", "127.0.0.1", 40022, Path("key"))
    for command in ran:
        options = [command[i + 1] for i, word in enumerate(command) if word == "-o"]
        assert options[: len(ssh.CLIENT_OPTIONS)] == list(ssh.CLIENT_OPTIONS)
        assert options[len(ssh.CLIENT_OPTIONS) :] in (["ConnectTimeout=20"], ["ConnectTimeout=10"])
        assert command[-4:-1] == ["-p", "40022", "ubuntu@127.0.0.1"]
    assert {"StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes"} <= set(ssh.CLIENT_OPTIONS)


def test_importing_the_backends_runs_nothing():
    """The tools' modules only define: no command runs and no process starts at import."""
    probe = (
        "import subprocess, sys\n"
        "def refuse(*args, **kwargs): raise AssertionError(f'ran {args}')\n"
        "subprocess.run = subprocess.Popen = subprocess.call = refuse\n"
        f"sys.path.insert(0, {str(REPO_ROOT / 'sandbox')!r})\n"
        "import machines.cli, machines.nspawn, machines.qemu\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
