"""The collection's plugins loaded from their files, for unit tests that need no installed collection."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load(path: str, name: str):
    """The module at `path` (from the repository's root), imported under `name`."""
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
