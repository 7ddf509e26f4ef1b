"""What the roles' per-release tests share: a playbook of tests/roles run on the implicit localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def run_on_localhost(playbook: Path, extra_vars: dict, inventory: Path | None = None) -> subprocess.CompletedProcess:
    """Run `playbook` on the implicit localhost only (an empty inventory keeps AWS out of it, or the given
    one, of hosts to read), with the project's ansible.cfg; faked facts in `extra_vars` must not steer
    interpreter discovery."""
    extra = {**extra_vars, "ansible_python_interpreter": sys.executable}
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory or "localhost,"), str(playbook), "-e", json.dumps(extra)],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        check=False,
    )
