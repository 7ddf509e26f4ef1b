"""Ansible's linear strategy run by Mitogen (ansible.cfg `strategy`), from the pinned mitogen package.

Mitogen keeps one Python interpreter per host (and one on the controller for local tasks) for the whole
run and sends modules to it over a single SSH connection, instead of starting a new interpreter, and
re-importing boto3, for every task. The strategy is Mitogen's own; this file only makes it findable
at a path that does not depend on where the virtual environment lives. `ANSIBLE_STRATEGY=linear`
turns it off for one run.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
