"""The data plane of the embedded AWS's Application Load Balancers: one real HAProxy per ALB, following the ELB API.

moto answers the elbv2 API but passes no traffic, runs no health check and forgets a deregistered target at
once. ``LoadBalancerDataPlane`` wraps moto's WSGI app in the server's own process, reads moto's elbv2 state
after each call that changes it (and every ``RECONCILE_INTERVAL`` seconds, for machines that boot after
their registration) and makes one HAProxy per load balancer do what the ALB would:

- each listener gets a frontend on 127.0.0.1 and a port of its own, kept for the load balancer's lifetime;
  ``forward`` goes to a backend per target group, ``redirect`` to the stand-in's own listener on the
  redirect's port, ``fixed-response`` answers itself; HTTPS listeners terminate TLS with a self-signed
  certificate made once per load balancer;
- instance targets are the sandbox machines recorded in ``<state>/hosts/*-<id>/host.json`` or
  ``<state>/vms/*-<id>/host.json`` (address; a VM's ``api_port`` stands for the target's port);
- the target group's health check runs as HAProxy's (path, interval, thresholds, timeout, matcher); a new
  target gets no traffic before it passed ``HealthyThresholdCount`` checks (``initial``), no retry and no
  redispatch hide a failing target (the client gets the 502 or 503 an ALB gives);
- deregistration drains: no new requests, in-flight ones finish, the server goes away after the target
  group's ``deregistration_delay.timeout_seconds``; re-registering cancels the drain; a terminated
  instance is drained as AWS does;
- DescribeTargetHealth answers from the data plane: initial, healthy, unhealthy, draining, unused.

Tests' time: SANDBOX_LB_HEALTH_CHECK_INTERVAL=<seconds> makes HAProxy check every target that often,
whatever the target group's HealthCheckIntervalSeconds (5 at least on AWS) says, as the provisioning tests
shorten AWS's delays (thresholds and the API's answers stay as the target group says).

Target changes use HAProxy's runtime API (admin socket), so no connection is dropped; a listener or health
check change restarts that HAProxy: the new process takes the listening sockets over (``-x``), so no new
connection is refused, and the old one finishes its requests, but closes its idle keep-alive client
connections (HAProxy 2.6), which a client may meet with its next request already sent.

Files, under ``<state>/load-balancers/`` (state: SANDBOX_STATE_DIR, else <repo>/.sandbox):
``<name>.json`` {"name", "arn", "dns_name", "listeners": [{"port", "protocol", "url", "served"}], "pid"},
written while the load balancer has listeners (``served`` is false for a listener the stand-in cannot
serve: not HTTP or HTTPS); ``<name>/haproxy.cfg``, ``admin.sock``, ``haproxy.pid``, ``haproxy.log`` (HAProxy's
warnings), ``tls.pem``, ``server.pid`` (the embedded AWS server that runs it). ``POST /moto-api/reset``
stops every HAProxy and forgets everything; so does the server's exit, without waiting for what another
thread waits on (``shutdown``). Stopping a load balancer stops the HAProxies a restart replaced too (those
still finishing requests); one still running a second after SIGTERM gets SIGKILL. A server that starts stops
the HAProxies of a dead server of the same state directory (and leaves those of a running one alone).

Not reproduced: listener rules other than the default action (amazon.aws cannot create them against moto
anyway), weighted forwarding to several target groups (the first one gets everything), targets of type
``ip`` or ``lambda``, a health check port other than the traffic port, and the ALB's fail-open (when every
target is unhealthy an ALB sends traffic to all of them; HAProxy answers 503).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from machines.records import machine_of_instance
from wsgi_layers import credential_scope, pass_through, read_body

HAPROXY = os.environ.get("SANDBOX_HAPROXY", "/usr/sbin/haproxy")
RECONCILE_INTERVAL = 0.5
# Seconds an HAProxy gets to end after SIGTERM (its hard stop: it ends at once) before SIGKILL.
STOP_GRACE = 1.0
# Seconds the exit waits for a thread that holds the lock (it may be waiting on an admin socket, 5 s a command).
EXIT_LOCK_WAIT = 1.0
CHANGING_ACTIONS = {
    "CreateLoadBalancer",
    "CreateListener",
    "ModifyListener",
    "DeleteListener",
    "DeleteLoadBalancer",
    "CreateTargetGroup",
    "ModifyTargetGroup",
    "ModifyTargetGroupAttributes",
    "DeleteTargetGroup",
    "RegisterTargets",
    "DeregisterTargets",
}
ELBV2_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
# HAProxy's check_status of a failed check, as the reason an ALB gives
FAILED_CHECK_REASONS = {
    "L7STS": ("Target.ResponseCodeMismatch", "Health checks failed with these codes: [{code}]"),
    "L4TOUT": ("Target.Timeout", "Request timed out"),
    "L7TOUT": ("Target.Timeout", "Request timed out"),
}
REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
    "unused": ("Target.NotInUse", "Target group is not configured to receive traffic from the load balancer"),
    "failed": ("Target.FailedHealthChecks", "Health checks failed"),
}


def state_directory() -> Path:
    return Path(os.environ.get("SANDBOX_STATE_DIR") or Path(__file__).resolve().parent.parent / ".sandbox")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _safe(name: str) -> str:
    """A name HAProxy accepts for a proxy or server (letters, digits, '-', '_', '.', ':')."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", name)


def _status_expectation(matcher: dict[str, Any] | None) -> str:
    """``http-check expect`` for an ALB matcher: "200", "200,202" or "200-299"."""
    codes = str((matcher or {}).get("HttpCode") or "200").replace(" ", "")
    if re.fullmatch(r"\d{3}", codes):
        return f"status {codes}"
    parts = []
    for part in codes.split(","):
        low, _, high = part.partition("-")
        low_code, high_code = int(low), int(high or low)
        if low_code % 100 == 0 and high_code == low_code + 99:
            parts.append(f"{low_code // 100}[0-9][0-9]")
        elif low_code % 10 == 0 and high_code == low_code + 9:
            parts.append(f"{low_code // 10}[0-9]")
        else:
            parts.extend(str(code) for code in range(low_code, high_code + 1))
    return f"rstatus ^({'|'.join(parts)})$"


# --- what moto says should exist --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A registered (or draining) target, placed on a sandbox machine."""

    target_group_arn: str
    id: str
    port: int

    @property
    def server(self) -> str:
        return _safe(f"{self.id}-{self.port}")


@dataclass
class Server:
    """A server in a running HAProxy, with what only this process knows about it."""

    backend: str
    address: str
    port: int
    draining: bool = False
    since: float = field(default_factory=time.monotonic)  # registration (or re-registration)
    ever_up: bool = False


@dataclass
class Balancer:
    name: str
    arn: str
    directory: Path
    ports: dict[int, int] = field(default_factory=dict)  # listener port: local port, for the LB's lifetime
    config: str = ""
    process: subprocess.Popen | None = None
    servers: dict[tuple[str, str], Server] = field(default_factory=dict)  # (backend, server name)

    @property
    def socket_path(self) -> Path:
        return self.directory / "admin.sock"


def _owner_running(pid_file: Path) -> bool:
    """True when the embedded AWS server that wrote pid_file still runs (and is not this one)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        return pid != os.getpid() and b"embedded_aws_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


def _stop_processes(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to all at once, then SIGKILL to those still running STOP_GRACE later."""
    for process in processes:
        process.terminate()  # nothing if it has ended: Popen reaps it first
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    for process in processes:
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:  # stuck in the kernel: nothing more to do from here
            print(f"load-balancers: HAProxy {process.pid} did not end after SIGKILL", flush=True)


class ShuttingDown(RuntimeError):
    """The server is exiting: no HAProxy starts any more."""


def _elbv2_backends() -> Iterable[tuple[str, str, Any]]:
    from moto.elbv2.models import elbv2_backends

    for account, regions in list(elbv2_backends.items()):
        for region, backend in list(regions.items()):
            yield account, region, backend


# --- the middleware ---------------------------------------------------------------------------------


class LoadBalancerDataPlane:
    def __init__(self, app: Callable, state_dir: Path | None = None, interval: float = RECONCILE_INTERVAL):
        self.app = app
        self.state = state_dir or state_directory()
        self.root = self.state / "load-balancers"
        self.lock = threading.RLock()
        self.balancers: dict[str, Balancer] = {}  # LB arn
        self.drains: dict[Target, float] = {}  # deregistered target: time.monotonic() when its drain ends
        self.terminated_seen: set[tuple[str, str]] = set()  # (TG arn, instance id) whose drain has begun
        # Every HAProxy started and not yet seen ending, the replaced ones still finishing requests included:
        # its load balancer's arn. Its own lock, so that the exit finds them all without waiting for `lock`.
        self.processes: dict[subprocess.Popen, str] = {}
        self.processes_lock = threading.Lock()
        self.stopping = threading.Event()  # set at the exit, under processes_lock: no HAProxy starts after it
        self.stop_stale()
        atexit.register(self.shutdown)
        self.thread = threading.Thread(target=self._loop, args=(interval,), name="load-balancers", daemon=True)
        self.thread.start()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            with self.lock:
                self.stop_all()
                result = self.app(environ, start_response)
                self.drains.clear()
                self.terminated_seen.clear()
            return result
        _region, service = credential_scope(environ)
        if service != "elasticloadbalancing" or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        params = {k: v[0] for k, v in parse_qs(read_body(environ).decode(errors="replace")).items()}
        action = params.get("Action")
        if action == "DescribeTargetHealth":
            return pass_through(
                self.app, environ, start_response, lambda status, body: self._target_health(params, status, body)
            )
        if action not in CHANGING_ACTIONS:
            return self.app(environ, start_response)
        with self.lock:  # one change at a time, so that a drain is recorded with the deregistration
            before = self._registered(params) if action == "DeregisterTargets" else {}

            def after(status: int, _body: bytes) -> None:
                if status < 300 and action == "DeregisterTargets":
                    self._begin_drains(params["TargetGroupArn"], before, params)
                self._reconcile_safely()

            return pass_through(self.app, environ, start_response, after)

    # --- deregistration

    @staticmethod
    def _target_group(arn: str) -> Any | None:
        for _account, _region, backend in _elbv2_backends():
            group = backend.target_groups.get(arn)
            if group is not None:
                return group
        return None

    def _registered(self, params: dict[str, str]) -> dict[str, dict[str, Any]]:
        group = self._target_group(params.get("TargetGroupArn", ""))
        return dict(group.targets) if group is not None else {}

    def _begin_drains(self, group_arn: str, before: dict[str, dict[str, Any]], params: dict[str, str]) -> None:
        group = self._target_group(group_arn)
        delay = float(group.attributes.get("deregistration_delay.timeout_seconds", 300)) if group else 0.0
        index = 1
        while f"Targets.member.{index}.Id" in params:
            target_id = params[f"Targets.member.{index}.Id"]
            registered = before.get(target_id)
            if registered is not None:
                # moto drops the target by id whatever the port: the registered port names the server
                self.drains[Target(group_arn, target_id, int(registered["Port"]))] = time.monotonic() + delay
            index += 1

    # --- reconciliation

    def _loop(self, interval: float) -> None:
        while not self.stopping.wait(interval):
            self._reap()
            if not self.balancers and not self.drains and not self._any_load_balancer():
                continue
            with self.lock:
                self._reconcile_safely()

    def _reconcile_safely(self) -> None:
        """Reconcile; a failure is printed (the server's log) and retried at the next round, never answered
        to the API call: moto's dicts may change under us, an HAProxy may fail to start. Not once exiting."""
        if self.stopping.is_set():
            return
        try:
            self.reconcile()
        except Exception as error:
            if not self.stopping.is_set():
                print(f"load-balancers: reconcile failed: {error!r}", flush=True)

    @staticmethod
    def _any_load_balancer() -> bool:
        return any(backend.load_balancers for _account, _region, backend in _elbv2_backends())

    def reconcile(self) -> None:
        """Make every HAProxy match moto's elbv2 state (called with the lock held)."""
        now = time.monotonic()
        self._drain_terminated(now)
        for target, ends in list(self.drains.items()):
            if ends <= now:
                del self.drains[target]
                group = self._target_group(target.target_group_arn)
                if group is not None and target.id in group.terminated_targets:  # now unused, as AWS says
                    group.deregistered_targets[target.id] = group.terminated_targets.pop(target.id)
        existing: dict[str, tuple[Any, Any]] = {}
        for _account, _region, backend in _elbv2_backends():
            for arn, model in list(backend.load_balancers.items()):
                if model.type == "application":
                    existing[arn] = (model, backend)
        for arn in [arn for arn in self.balancers if arn not in existing]:
            self._stop(self.balancers.pop(arn), forget=True)
        for arn, (model, backend) in existing.items():
            if model.listeners:
                self._apply(model, backend)
                self._refresh_ever_up(self.balancers[arn])
            elif arn in self.balancers:  # no listener left: no HAProxy, but the ports stay the LB's
                self._stop(self.balancers[arn], forget=False)

    def _drain_terminated(self, now: float) -> None:
        """moto moves a terminated instance's targets aside (draining for ever): drain them for the delay."""
        for _account, _region, backend in _elbv2_backends():
            for group in list(backend.target_groups.values()):
                for target_id, target in list(group.terminated_targets.items()):
                    key = (group.arn, target_id)
                    if key not in self.terminated_seen:
                        self.terminated_seen.add(key)
                        delay = float(group.attributes.get("deregistration_delay.timeout_seconds", 300))
                        self.drains[Target(group.arn, target_id, int(target["Port"]))] = now + delay

    def _apply(self, model: Any, backend: Any) -> None:
        balancer = self.balancers.get(model.arn)
        if balancer is None:
            balancer = Balancer(model.name, model.arn, self.root / model.name)
            self.balancers[model.arn] = balancer
        listeners = sorted(model.listeners.values(), key=lambda listener: int(listener.port))
        for listener in listeners:
            balancer.ports.setdefault(int(listener.port), _free_port())
        groups = {}
        for listener in listeners:
            for action in listener.default_actions:
                for arn in _forwarded_groups(action):
                    if arn in backend.target_groups:
                        groups[arn] = backend.target_groups[arn]
        config = self._config(balancer, model, listeners, groups)
        if config != balancer.config or not self._running(balancer):
            self._refresh_ever_up(balancer)
            self._start(balancer, config, self._config(balancer, model, listeners, groups, balancer.servers))
        self._write_record(balancer, model, listeners)
        self._servers(balancer, groups)

    def _servers(self, balancer: Balancer, groups: dict[str, Any]) -> None:
        """Add, drain, re-enable and remove servers through the admin socket."""
        wanted: dict[tuple[str, str], tuple[Target, str, int, bool]] = {}
        for arn, group in groups.items():
            backend_name = _backend_name(group)
            if group.target_type != "instance":
                continue
            for target_id, registered in list(group.targets.items()):
                target = Target(arn, target_id, int(registered["Port"]))
                self.drains.pop(target, None)  # re-registered: the drain is cancelled
                found = machine_of_instance(target_id, self.state)
                if found is None:
                    continue  # initial until the machine has booted
                _directory, machine = found
                port = int(machine.get("api_port") or target.port)
                wanted[(backend_name, target.server)] = (target, machine["address"], port, False)
            for target in self.drains:
                if target.target_group_arn == arn and (backend_name, target.server) not in wanted:
                    current = balancer.servers.get((backend_name, target.server))
                    if current is not None:  # only a server that took traffic has something to drain
                        wanted[(backend_name, target.server)] = (target, current.address, current.port, True)
        for key, server in list(balancer.servers.items()):
            want = wanted.get(key)
            if want is None or (want[1], want[2]) != (server.address, server.port):
                self._remove_server(balancer, key)
            elif want[3] and not server.draining:
                self._command(balancer, f"set server {key[0]}/{key[1]} state drain")
                server.draining = True
            elif not want[3] and server.draining:
                self._start_initial(balancer, key)
                server.draining, server.since, server.ever_up = False, time.monotonic(), False
        for key, (_target, address, port, draining) in wanted.items():
            if key not in balancer.servers and not draining:
                self._command(balancer, f"add server {key[0]}/{key[1]} {address}:{port} check")
                self._start_initial(balancer, key)
                balancer.servers[key] = Server(key[0], address, port)

    def _start_initial(self, balancer: Balancer, key: tuple[str, str]) -> None:
        """Put the server in rotation DOWN, so that it gets traffic only after `rise` passing checks.

        Measured with HAProxy 2.6: a dynamic server starts in maintenance, and leaving maintenance sets its
        health to `rise` (UP at once, before any check, traffic included). Leaving *drain* keeps the health
        as it is, so: maintenance -> drain (no new traffic) -> health down -> ready (DOWN until it passes).
        """
        name = f"{key[0]}/{key[1]}"
        self._command(balancer, f"enable health {name}")
        self._command(balancer, f"set server {name} state drain")
        self._command(balancer, f"set server {name} health down")
        self._command(balancer, f"set server {name} state ready")

    def _remove_server(self, balancer: Balancer, key: tuple[str, str]) -> None:
        name = f"{key[0]}/{key[1]}"
        self._command(balancer, f"set server {name} state maint")
        self._command(balancer, f"shutdown sessions server {name}")
        answer = self._command(balancer, f"del server {name}")
        if "Server deleted" in answer or "No such server" in answer or not self._running(balancer):
            balancer.servers.pop(key, None)  # otherwise (connections still closing) try again next round

    # --- HAProxy

    def _config(
        self,
        balancer: Balancer,
        model: Any,
        listeners: list[Any],
        groups: dict[str, Any],
        servers: dict[tuple[str, str], Server] | None = None,
    ) -> str:
        """The configuration; ``servers`` (at a restart) as static servers, those not yet up in maintenance."""
        idle = int(model.attrs.get("idle_timeout.timeout_seconds") or 60)
        lines = [
            "# Written by sandbox/load_balancers.py: the data plane of the ALB " + model.name,
            "global",
            f"  stats socket {balancer.socket_path} mode 600 level admin expose-fd listeners",
            "defaults",
            "  mode http",
            "  option http-keep-alive",
            "  option forwardfor",
            "  retries 0",  # an ALB does not retry: the client sees the target's failure
            "  timeout connect 10s",
            f"  timeout client {idle}s",
            f"  timeout server {idle}s",
            f"  timeout http-keep-alive {idle}s",
            "  timeout http-request 60s",
        ]
        by_port = {int(listener.port): listener for listener in listeners}
        for listener in listeners:
            port = int(listener.port)
            served = self._servable(balancer, listener)
            if not served:
                continue
            bind = f"  bind 127.0.0.1:{balancer.ports[port]}"
            if listener.protocol == "HTTPS":
                bind += f" ssl crt {balancer.directory / 'tls.pem'}"
            lines += [
                f"frontend listener-{port}",
                bind,
                f"  http-request set-header X-Forwarded-Proto {listener.protocol.lower()}",
                f"  http-request set-header X-Forwarded-Port {port}",
            ]
            lines += self._actions(balancer, listener, by_port)
        for group in groups.values():
            lines += _backend(group)
            for (backend_name, name), server in (servers or {}).items():
                if backend_name == _backend_name(group) and not server.draining:
                    disabled = "" if server.ever_up else " disabled"
                    lines.append(f"  server {name} {server.address}:{server.port} check{disabled}")
        return "\n".join(lines) + "\n"

    def _servable(self, balancer: Balancer, listener: Any) -> bool:
        if listener.protocol == "HTTP":
            return True
        if listener.protocol != "HTTPS":
            return False
        return self._certificate(balancer) is not None

    def _certificate(self, balancer: Balancer) -> Path | None:
        pem = balancer.directory / "tls.pem"
        if pem.exists():
            return pem
        balancer.directory.mkdir(parents=True, exist_ok=True)
        key, cert = balancer.directory / "tls.key", balancer.directory / "tls.crt"
        result = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj",
             f"/CN={balancer.name}", "-keyout", str(key), "-out", str(cert)],
            capture_output=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
        pem.write_bytes(cert.read_bytes() + key.read_bytes())
        return pem

    @staticmethod
    def _actions(balancer: Balancer, listener: Any, by_port: dict[int, Any]) -> list[str]:
        for action in listener.default_actions:
            data = action.data
            if action.type == "forward":
                groups = _forwarded_groups(action)
                if groups:
                    return [f"  default_backend {_backend_name_of_arn(groups[0])}"]
            if action.type == "redirect":
                config = data.get("RedirectConfig", {})
                protocol = config.get("Protocol", "#{protocol}")
                port = config.get("Port", "#{port}")
                code = str(config.get("StatusCode", "HTTP_301")).removeprefix("HTTP_")
                if protocol == "#{protocol}":
                    protocol = listener.protocol
                target_port = int(listener.port) if port == "#{port}" else int(port)
                if target_port in balancer.ports and target_port in by_port:
                    prefix = f"{protocol.lower()}://127.0.0.1:{balancer.ports[target_port]}"
                else:
                    prefix = f"{protocol.lower()}://%[req.hdr(host),field(1,:)]:{target_port}"
                return [f"  http-request redirect prefix {prefix} code {code}"]
            if action.type == "fixed-response":
                config = data.get("FixedResponseConfig", {})
                body = json.dumps(str(config.get("MessageBody", "")))
                content_type = config.get("ContentType", "text/plain")
                return [f'  http-request return status {config.get("StatusCode", 200)} '
                        f'content-type "{content_type}" string {body}']  # fmt: skip
        return ["  http-request return status 503"]

    @staticmethod
    def _running(balancer: Balancer) -> bool:
        return balancer.process is not None and balancer.process.poll() is None

    def _start(self, balancer: Balancer, config: str, config_with_servers: str) -> None:
        """(Re)start this load balancer's HAProxy; the new process takes the listening sockets over.

        The servers known so far are static servers of the new configuration: those that were up start up
        (HAProxy's default for a static server with checks), the others start as new targets do.
        """
        balancer.directory.mkdir(parents=True, exist_ok=True)
        path = balancer.directory / "haproxy.cfg"
        path.write_text(config_with_servers)
        old = balancer.process if self._running(balancer) else None
        command = [HAPROXY, "-db", "-f", str(path)]
        if old is not None:
            # -x: the listening sockets pass from the old process; -sf: the old one then finishes its
            # requests (those of draining servers included) and exits
            command += ["-x", str(balancer.socket_path), "-sf", str(old.pid)]
        with self.processes_lock:
            if self.stopping.is_set():
                raise ShuttingDown(balancer.name)
            with open(balancer.directory / "haproxy.log", "ab") as log:
                process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            self.processes[process] = balancer.arn  # the old one stays there until it has finished (_reap)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None and not self.stopping.is_set():
            if f"Pid: {process.pid}\n" in self._command_at(balancer.socket_path, "show info", quiet=True):
                break
            time.sleep(0.02)
        balancer.process = process
        balancer.config = config
        (balancer.directory / "haproxy.pid").write_text(f"{process.pid}\n")
        (balancer.directory / "server.pid").write_text(f"{os.getpid()}\n")
        for key, server in list(balancer.servers.items()):
            if server.draining:
                del balancer.servers[key]  # its requests finish in the old process
            elif not server.ever_up:
                self._start_initial(balancer, key)

    def _refresh_ever_up(self, balancer: Balancer) -> None:
        """Note which servers have passed their checks (before a restart, or for DescribeTargetHealth)."""
        if not self._running(balancer) or all(s.ever_up or s.draining for s in balancer.servers.values()):
            return
        stats = _server_stats(self._command(balancer, "show stat -1 4 -1"))
        for key, server in balancer.servers.items():
            if stats.get(key, {}).get("status", "").startswith("UP") and not server.draining:
                server.ever_up = True

    def _stop(self, balancer: Balancer, forget: bool) -> None:
        """Stop the load balancer's HAProxies: the current one and those a restart replaced."""
        with self.processes_lock:
            processes = [process for process, arn in self.processes.items() if arn == balancer.arn]
        _stop_processes(processes)
        self._reap()
        balancer.process = None
        balancer.config = ""
        balancer.servers.clear()
        self._remove_files(balancer, forget)

    def _remove_files(self, balancer: Balancer, forget: bool) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / f"{balancer.name}.json").unlink()
        if forget:
            shutil.rmtree(balancer.directory, ignore_errors=True)

    def _reap(self) -> None:
        """Forget the HAProxies that have ended (a replaced one once its requests are done), reaping them."""
        with self.processes_lock:
            for process in [process for process in self.processes if process.poll() is not None]:
                del self.processes[process]

    def stop_all(self) -> None:
        with self.lock:
            for balancer in self.balancers.values():
                self._stop(balancer, forget=True)
            self.balancers.clear()

    def shutdown(self) -> None:
        """The server's exit (atexit): stop every HAProxy it started, in STOP_GRACE and EXIT_LOCK_WAIT at most.

        Without waiting for the lock first: a request or the reconciliation may hold it for many seconds,
        waiting on the admin socket of an HAProxy that does not answer (5 s a command, one per target for
        DescribeTargetHealth). Once the HAProxies are gone such a wait ends at once; the lock is then awaited
        EXIT_LOCK_WAIT at most before the files go, whoever holds it (the process ends right after).
        """
        with self.processes_lock:
            self.stopping.set()
            processes = list(self.processes)
        _stop_processes(processes)
        locked = self.lock.acquire(timeout=EXIT_LOCK_WAIT)
        try:
            for balancer in list(self.balancers.values()):
                self._remove_files(balancer, forget=True)
        finally:
            if locked:
                self.lock.release()

    def stop_stale(self) -> None:
        """Stop the HAProxies a previous server of this state directory left running, and forget them.

        Those of another server that still runs on this state directory (a test's, besides the sandbox's
        own) are left alone.
        """
        for pid_file in self.root.glob("*/haproxy.pid"):
            directory = pid_file.parent
            if _owner_running(directory / "server.pid"):
                continue
            config = str(directory / "haproxy.cfg")
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().split()[0])
                command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if config.encode() in command_line:
                    os.kill(pid, signal.SIGTERM)
                    deadline = time.monotonic() + 5
                    while Path(f"/proc/{pid}/cmdline").read_bytes() and time.monotonic() < deadline:
                        time.sleep(0.05)  # a zombie (no cmdline) or gone (OSError) is stopped
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{directory.name}.json").unlink()
            shutil.rmtree(directory, ignore_errors=True)

    def _write_record(self, balancer: Balancer, model: Any, listeners: list[Any]) -> None:
        record = {
            "name": model.name,
            "arn": model.arn,
            "dns_name": model.dns_name,
            "listeners": [
                {
                    "port": int(listener.port),
                    "protocol": listener.protocol,
                    "url": f"{listener.protocol.lower()}://127.0.0.1:{balancer.ports[int(listener.port)]}",
                    "served": self._servable(balancer, listener),
                }
                for listener in listeners
            ],
            "pid": balancer.process.pid if balancer.process else None,
        }
        path = self.root / f"{model.name}.json"
        text = json.dumps(record, indent=2) + "\n"
        if not path.exists() or path.read_text() != text:
            temporary = path.with_suffix(".json.tmp")
            temporary.write_text(text)
            temporary.replace(path)

    def _command(self, balancer: Balancer, command: str) -> str:
        return self._command_at(balancer.socket_path, command)

    @staticmethod
    def _command_at(path: Path, command: str, quiet: bool = False) -> str:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
        except OSError as error:
            if not quiet:
                print(f"load-balancers: {command!r} on {path}: {error}", flush=True)
            return ""

    # --- DescribeTargetHealth

    def _health(self, group: Any, target_id: str, port: int) -> tuple[str, str | None, str | None] | None:
        """State, reason, description from the data plane; None when moto's answer stands (not registered)."""
        target = Target(group.arn, target_id, port)
        registered = group.targets.get(target_id)
        if registered is None or int(registered["Port"]) != port:
            if target in self.drains:
                return ("draining", *REASONS["draining"])
            return None
        backend_name = _backend_name(group)
        balancers = [b for b in self.balancers.values() if f"backend {backend_name}\n" in b.config]
        if not balancers:
            return ("unused", *REASONS["unused"])
        key = (backend_name, target.server)
        for balancer in balancers:
            server = balancer.servers.get(key)
            if server is None:
                continue
            row = _server_stats(self._command(balancer, f"show stat {backend_name} 4 -1")).get(key)
            if row is None:
                continue
            if row.get("status", "").startswith("UP"):
                server.ever_up = True
                return ("healthy", None, None)
            checking_for = time.monotonic() - server.since
            failing_long_enough = checking_for >= _check_interval(group) * int(group.unhealthy_threshold_count)
            if not server.ever_up and (row.get("check_status") in ("INI", "") or not failing_long_enough):
                return ("initial", *REASONS["initial"])
            reason, description = FAILED_CHECK_REASONS.get(row.get("check_status", ""), REASONS["failed"])
            return ("unhealthy", reason, description.format(code=row.get("check_code", "")))
        return ("initial", *REASONS["initial"])  # the machine has not booted yet, or HAProxy is starting

    def _target_health(self, params: dict[str, str], status: int, body: bytes) -> bytes | None:
        if status >= 300:
            return None
        with self.lock:
            group = self._target_group(params.get("TargetGroupArn", ""))
            if group is None:
                return None
            ET.register_namespace("", ELBV2_NS)
            root = ET.fromstring(body)
            ns = {"e": ELBV2_NS}
            descriptions = root.find(".//e:TargetHealthDescriptions", ns)
            if descriptions is None:
                return None
            listed = set()
            for member in descriptions.findall("e:member", ns):
                target_id = member.findtext("e:Target/e:Id", default="", namespaces=ns)
                port = int(member.findtext("e:Target/e:Port", default="0", namespaces=ns) or 0)
                listed.add(Target(group.arn, target_id, port))
                health = self._health(group, target_id, port)
                if health is not None:
                    _set_health(member, health, ns)
            if "Targets.member.1.Id" not in params:  # listing all: the draining ones too
                for target in self.drains:
                    if target.target_group_arn == group.arn and target not in listed:
                        health = self._health(group, target.id, target.port)
                        if health is not None:
                            descriptions.append(_member(target, group, health))
            return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _set_health(member: ET.Element, health: tuple[str, str | None, str | None], ns: dict[str, str]) -> None:
    target_health = member.find("e:TargetHealth", ns)
    if target_health is None:
        target_health = ET.SubElement(member, f"{{{ELBV2_NS}}}TargetHealth")
    for child in list(target_health):
        target_health.remove(child)
    state, reason, description = health
    ET.SubElement(target_health, f"{{{ELBV2_NS}}}State").text = state
    if reason:
        ET.SubElement(target_health, f"{{{ELBV2_NS}}}Reason").text = reason
        ET.SubElement(target_health, f"{{{ELBV2_NS}}}Description").text = description


def _member(target: Target, group: Any, health: tuple[str, str | None, str | None]) -> ET.Element:
    member = ET.Element(f"{{{ELBV2_NS}}}member")
    element = ET.SubElement(member, f"{{{ELBV2_NS}}}Target")
    ET.SubElement(element, f"{{{ELBV2_NS}}}Id").text = target.id
    ET.SubElement(element, f"{{{ELBV2_NS}}}Port").text = str(target.port)
    if group.health_check_port:
        ET.SubElement(member, f"{{{ELBV2_NS}}}HealthCheckPort").text = str(group.health_check_port)
    _set_health(member, health, {"e": ELBV2_NS})
    return member


def _server_stats(csv: str) -> dict[tuple[str, str], dict[str, str]]:
    """``show stat`` CSV as {(backend, server): {column: value}}."""
    lines = [line for line in csv.splitlines() if line]
    if not lines or not lines[0].startswith("# "):
        return {}
    columns = lines[0][2:].split(",")
    rows = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split(","), strict=False))
        rows[(row.get("pxname", ""), row.get("svname", ""))] = row
    return rows


def _forwarded_groups(action: Any) -> list[str]:
    if action.type != "forward":
        return []
    data = action.data
    if data.get("TargetGroupArn"):
        return [data["TargetGroupArn"]]
    return [group["TargetGroupArn"] for group in data.get("ForwardConfig", {}).get("TargetGroups", [])]


def _backend_name_of_arn(arn: str) -> str:
    # arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>
    return "tg-" + _safe(arn.split(":")[-1].split("/")[1])


def _backend_name(group: Any) -> str:
    return _backend_name_of_arn(group.arn)


def _check_interval(group: Any) -> int:
    """Seconds between two health checks of a target: the target group's, unless tests shorten it."""
    return int(os.environ.get("SANDBOX_LB_HEALTH_CHECK_INTERVAL") or group.health_check_interval_seconds)


def _backend(group: Any) -> list[str]:
    interval = _check_interval(group)
    lines = [
        f"backend {_backend_name(group)}",
        "  balance roundrobin",
        f"  timeout check {int(group.health_check_timeout_seconds)}s",
        f"  default-server inter {interval}s fastinter {interval}s downinter {interval}s "
        f"rise {int(group.healthy_threshold_count)} fall {int(group.unhealthy_threshold_count)}",
    ]
    if group.health_check_enabled and (group.health_check_protocol or "HTTP").upper() in ("HTTP", "HTTPS"):
        path = group.health_check_path or "/"
        lines += [
            "  option httpchk",
            f"  http-check send meth GET uri {path} ver HTTP/1.1 hdr Host localhost",
            f"  http-check expect {_status_expectation(group.matcher)}",
        ]
    return lines  # checks go to the traffic port (a VM's forwarded one), whatever HealthCheckPort says
