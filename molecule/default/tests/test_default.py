"""The configured host, as an operator would inspect it over SSH."""

import json
import os
import re

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts(
    "api_servers"
)

UNIT = "coffee-ranker-api.service"
PORT = 11373
METRICS_PORT = 11374
NODE_EXPORTER_PORT = 9100


def test_service_is_enabled_and_running(host):
    service = host.service(UNIT)
    assert service.is_enabled
    assert service.is_running


def test_service_runs_as_its_own_unprivileged_user(host):
    main_pid = host.check_output(f"systemctl show --property=MainPID --value {UNIT}")
    assert main_pid not in ("", "0")
    user = host.check_output(f"ps -o user= -p {main_pid}")
    assert user == "coffee-ranker"
    account = host.user("coffee-ranker")
    assert account.shell in ("/usr/sbin/nologin", "/sbin/nologin")
    assert account.uid < 1000  # a system account


def test_service_listens_on_every_address(host):
    assert host.socket(f"tcp://0.0.0.0:{PORT}").is_listening


def test_healthz_answers_on_the_host(host):
    body = host.check_output(f"curl --fail --silent --show-error http://127.0.0.1:{PORT}/healthz")
    assert json.loads(body) == {"status": "ok"}


def test_environment_file_is_readable_by_the_service_group_only(host):
    env_file = host.file("/etc/coffee-ranker/api.env")
    assert env_file.is_file
    assert env_file.mode == 0o640
    assert env_file.user == "root"
    assert env_file.group == "coffee-ranker"
    assert 'RANKER_PORT="11373"' in env_file.content_string


def test_configuration_folder_is_readable_by_the_service_group_only(host):
    config = host.file("/etc/coffee-ranker")
    assert config.is_directory
    assert (config.user, config.group, config.mode) == ("root", "coffee-ranker", 0o750)


def test_data_folder_belongs_to_the_service(host):
    data = host.file("/var/lib/coffee-ranker")
    assert data.is_directory
    assert (data.user, data.group, data.mode) == ("coffee-ranker", "coffee-ranker", 0o750)
    # The code is root's: the service cannot change it.
    assert host.file("/opt/coffee-ranker/venv").user == "root"


def test_unit_is_hardened(host):
    assert "NoNewPrivileges=yes" in host.file(f"/etc/systemd/system/{UNIT}").content_string
    report = host.check_output(f"systemd-analyze security {UNIT}")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)
    assert match, report
    assert float(match.group(1)) <= 4.0, report


def test_firewall_is_active_with_exactly_the_intended_rules(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert re.search(r"Default: deny \(incoming\), allow \(outgoing\)", status)
    assert "Logging: on (low)" in status
    lines = status.splitlines()
    table = lines[[line.startswith("--") for line in lines].index(True) + 1 :]
    rules = set()
    for line in table:
        line = line.split("#")[0].strip()  # without the rule's comment
        if line:
            to, action, source = re.split(r"\s{2,}", line)
            rules.add((to, action, source))
    assert rules == {
        # SSH's sources are the security group's to narrow (ssh_admin_cidr): a host rule for the
        # operator's address would lock everyone out when that address changes.
        ("22/tcp", "ALLOW IN", "Anywhere"),
        ("22/tcp (v6)", "ALLOW IN", "Anywhere (v6)"),
        (f"{PORT}/tcp", "ALLOW IN", "Anywhere"),
        (f"{PORT}/tcp (v6)", "ALLOW IN", "Anywhere (v6)"),
        # The metrics ports, from the monitoring network only (monitoring_cidr: ssh_admin_cidr by default).
        (f"{METRICS_PORT}/tcp", "ALLOW IN", monitoring_cidr(host)),
        (f"{NODE_EXPORTER_PORT}/tcp", "ALLOW IN", monitoring_cidr(host)),
    }


def monitoring_cidr(host) -> str:
    """monitoring_cidr as Ansible renders it for this host (the sandbox's admin network)."""
    return host.ansible("ansible.builtin.debug", "var=monitoring_cidr")["monitoring_cidr"]


def test_the_api_serves_its_metrics_on_their_own_port_only(host):
    env = host.file("/etc/coffee-ranker/api.env").content_string
    assert f'RANKER_METRICS_PORT="{METRICS_PORT}"' in env
    assert host.socket(f"tcp://0.0.0.0:{METRICS_PORT}").is_listening
    metrics = host.check_output(f"curl --silent --fail http://127.0.0.1:{METRICS_PORT}/metrics")
    assert "coffee_ranker_build_info{" in metrics
    assert 'route="/healthz"' in metrics, "the role's own health checks were counted by route template"
    public = host.run(f"curl --silent --output /dev/null --write-out '%{{http_code}}' http://127.0.0.1:{PORT}/metrics")
    assert public.stdout == "404", "the public API port does not serve the metrics"


def test_node_exporter_is_enabled_running_and_serves_the_hosts_metrics(host):
    service = host.service("prometheus-node-exporter")
    assert service.is_enabled
    assert service.is_running
    assert host.socket(f"tcp://{NODE_EXPORTER_PORT}").is_listening
    metrics = host.check_output(f"curl --silent --fail http://127.0.0.1:{NODE_EXPORTER_PORT}/metrics")
    assert "node_uname_info" in metrics
    assert 'collector="hwmon"' not in metrics, "collectors of hardware an EC2 instance lacks are off"


def test_node_exporter_runs_unprivileged_in_a_sandboxed_unit(host):
    unit = host.check_output(
        "systemctl show prometheus-node-exporter --property=User,NoNewPrivileges,ProtectSystem,CapabilityBoundingSet"
    )
    assert "User=prometheus" in unit
    assert "NoNewPrivileges=yes" in unit
    assert "ProtectSystem=strict" in unit
    assert "CapabilityBoundingSet=" in unit.splitlines(), "no capability at all"


def test_sshd_refuses_passwords_and_root(host):
    effective = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line)
    assert effective["passwordauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"


def test_unattended_upgrades_install_security_updates_only(host):
    config = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'APT::Periodic::Update-Package-Lists "1";' in config
    origins = re.findall(r'^Unattended-Upgrade::Origins-Pattern:: "(.*)";$', config, re.MULTILINE)
    assert origins
    assert all("-security" in origin for origin in origins), origins
    assert not re.search(r"^Unattended-Upgrade::Allowed-Origins:: ", config, re.MULTILINE)
    assert host.package("unattended-upgrades").is_installed


def test_timezone_is_utc(host):
    assert host.check_output("date +%Z") == "UTC"
    assert host.check_output("timedatectl show --property=Timezone --value") == "Etc/UTC"
