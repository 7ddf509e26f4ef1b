"""The command line of sandbox/hosts and sandbox/vms: the same verbs and flags for both backends.

  image [--suite S]                                build (or reuse) the cached image of a Debian release
  start NAME --public-key KEY.pub [--suite S] [--instance-id ID] [--wait-login PRIVATE_KEY]
                                                   boot a machine; print its JSON once it is ready
  stop NAME... | stop --all                        power off and remove every trace of it
  list | address NAME                              what runs, and where
  cleanup [--stale]                                stop every machine, remove every trace, also of killed runs
                                                   (--stale: only the traces; running machines stay)

Exit status: 0, 1 on a failure (one line on stderr) or when `address` names no running machine, 2 on a
usage error, 130 when interrupted. SANDBOX_BOOT_TIMEOUT (seconds) bounds the wait for a machine to be ready.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

from . import lifecycle
from .debian import DEFAULT_SUITE, SUITES
from .lifecycle import Backend
from .records import Records, is_running, public_view
from .shell import Failure, log, set_program

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NEEDS_ROOT = ("image", "start", "stop", "cleanup")


def instance_name(noun: str):
    """argparse's type for a machine's name: also its hostname, so a DNS label."""

    def check(value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise argparse.ArgumentTypeError(
                f"a {noun} name: lowercase letters, digits and '-', at most 63 characters (e.g. i-0a1b2c3d4e5f60718)"
            )
        return value

    return check


def build_parser(backend: Backend) -> argparse.ArgumentParser:
    doc = backend.__doc__ or ""
    noun, name_type = backend.NOUN, instance_name(backend.NOUN)
    parser = argparse.ArgumentParser(
        prog=backend.PROGRAM,
        description=doc.split("\n\n")[0],
        epilog="\n\n".join(doc.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    image_parser = commands.add_parser(
        "image", aliases=backend.IMAGE_ALIASES, help=f"build (or reuse) the cached {backend.IMAGE_NOUN} of a suite"
    )
    image_parser.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE)

    start_parser = commands.add_parser("start", help=f"boot a {noun} and print its JSON once it is ready")
    start_parser.add_argument("name", type=name_type, help=f"{noun} name, also the hostname (e.g. an instance id)")
    start_parser.add_argument("--public-key", type=Path, required=True, help="OpenSSH public key for `ubuntu`")
    start_parser.add_argument("--suite", choices=SUITES, help=f"Debian release (default {DEFAULT_SUITE})")
    start_parser.add_argument("--instance-id", help="cloud-init instance-id (default: NAME)")
    start_parser.add_argument(
        "--user-data",
        type=argparse.FileType("r"),
        metavar="FILE",
        help="the instance's user data, a cloud-config (- reads it from stdin): merged into the seed's",
    )
    start_parser.add_argument(
        "--ssh-port", type=int, default=22, help="the port sshd listens on inside, as the user data sets it"
    )
    start_parser.add_argument(
        "--wait-login", type=Path, metavar="PRIVATE_KEY", help="also wait until `ubuntu` logs in with this private key"
    )

    stop_parser = commands.add_parser("stop", help=f"power off a {noun} and remove all trace of it")
    stop_parser.add_argument("names", nargs="*", type=name_type, metavar="NAME")
    stop_parser.add_argument("--all", action="store_true", help=f"stop every {noun}")

    commands.add_parser("list", help=f"print the running {noun}s as a JSON list")
    address_parser = commands.add_parser("address", help=f"print a running {noun}'s SSH address (exit 1 if it is not)")
    address_parser.add_argument("name", type=name_type)
    cleanup_parser = commands.add_parser("cleanup", help=f"stop every {noun}, remove every trace, also of killed runs")
    cleanup_parser.add_argument(
        "--stale", action="store_true", help=f"only what stopped or killed runs left behind; running {noun}s stay"
    )
    backend.add_commands(commands)
    return parser


def print_field(records: Records, name: str, field: str) -> int:
    """Print one field of a running machine's record (`address`, `port`); 1 if it does not run."""
    record = records.read(name)
    if not record or not is_running(record):
        log(f"{name} is not running")
        return 1
    print(record[field])
    return 0


def run_command(backend: Backend, parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    command = "image" if arguments.command in backend.IMAGE_ALIASES else arguments.command
    if command in NEEDS_ROOT and os.geteuid() != 0:
        raise Failure(f"`{arguments.command}` needs root ({backend.ROOT_REASON})")
    if command in NEEDS_ROOT:
        for tool in backend.TOOLS:
            if not shutil.which(tool):
                raise Failure(f"{tool} is missing: run {backend.DEPS_SCRIPT}")

    if command == "image":
        print(backend.image(arguments.suite))
    elif command == "start":
        if arguments.wait_login and not arguments.wait_login.is_file():
            parser.error(f"--wait-login: no such private key {arguments.wait_login}")
        record = lifecycle.start(
            backend,
            arguments.name,
            arguments.public_key,
            arguments.suite,
            arguments.instance_id,
            arguments.wait_login,
            arguments.ssh_port,
            arguments.user_data.read() if arguments.user_data else "",
        )
        print(json.dumps(public_view(record, backend.PUBLIC_FIELDS)), flush=True)
    elif command == "stop":
        if arguments.all == bool(arguments.names):
            parser.error("stop takes NAME... or --all")
        lifecycle.stop(backend, backend.RECORDS.names() if arguments.all else arguments.names)
    elif command == "list":
        print(json.dumps([public_view(record, backend.PUBLIC_FIELDS) for record in backend.RECORDS.running()]))
    elif command == "address":
        return print_field(backend.RECORDS, arguments.name, "address")
    elif command == "cleanup":
        lifecycle.cleanup(backend, arguments.stale)
    else:
        return backend.run_command(arguments)
    return 0


def main(backend: Backend, argv: list[str] | None = None) -> int:
    """Run the tool; its exit status. A Failure is reported in one line, without a traceback."""
    set_program(backend.PROGRAM)
    try:
        parser = build_parser(backend)
        return run_command(backend, parser, parser.parse_args(argv))
    except Failure as failure:
        log(str(failure))
        return 1
    except KeyboardInterrupt:
        return 130
