"""The sandbox's machines: local hosts that boot like fresh EC2 instances, for the configure roles to SSH into.

Two backends behind one command line: `nspawn` (sandbox/hosts, containers that boot in seconds) and `qemu`
(sandbox/vms, VMs with a kernel of their own). What both do alike lives here once: records of the machines
and their processes, locks, mounts, waiting, SSH readiness and login, starting and stopping, the CLI.
"""
