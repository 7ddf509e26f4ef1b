"""The domain depends on nothing outside it: storage implements the domain's ports, the HTTP layer
calls the domain, never the other way round. Read from the source, so a lazy import counts too."""

import ast
from pathlib import Path

import pytest

import coffee_ranker.domain

DOMAIN = Path(coffee_ranker.domain.__file__).resolve().parent
FORBIDDEN = (
    "coffee_ranker.storage",
    "coffee_ranker.api",
    "coffee_ranker.app",
    "coffee_ranker.edge",
    "coffee_ranker.problems",
    "coffee_ranker.cli",
)


def imported_modules(source):
    """Every module a domain module's source imports, relative imports resolved against the domain."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = ["coffee_ranker", "domain"][: 3 - node.level]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "coffee_ranker":  # ``from coffee_ranker import storage``: the names are the modules
                yield from (f"{base}.{alias.name}" for alias in node.names)
            else:
                yield base


def is_forbidden(module):
    return any(module == layer or module.startswith(layer + ".") for layer in FORBIDDEN)


def test_domain_imports_no_outer_layer():
    sources = sorted(DOMAIN.glob("*.py"))
    assert len(sources) > 1, f"no domain modules found in {DOMAIN}"
    offending = [
        f"{path.name} imports {module}"
        for path in sources
        for module in imported_modules(path.read_text())
        if is_forbidden(module)
    ]
    assert not offending, "the domain must not depend on outer layers:\n" + "\n".join(offending)


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("import coffee_ranker.storage.sqlite", True),
        ("from coffee_ranker.storage.base import Repository", True),
        ("from coffee_ranker import api", True),
        ("from .. import app", True),
        ("from ..edge import EdgeMiddleware", True),
        ("def f():\n    from coffee_ranker.storage import factory", True),
        ("from coffee_ranker.domain.ports import Repository", False),
        ("from . import models", False),
        ("import coffee_ranker.storage_helpers", False),
    ],
)
def test_the_check_sees_every_form_of_import(source, forbidden):
    """The test above proves something only if it catches each way a domain module could import."""
    assert any(is_forbidden(module) for module in imported_modules(source)) is forbidden


def test_the_metrics_module_imports_no_layer_that_uses_it():
    """Storage and the edge record metrics: metrics.py may depend on the domain only, or it would close
    an import cycle through them."""
    import coffee_ranker.metrics

    source = Path(coffee_ranker.metrics.__file__).read_text()
    offending = [module for module in imported_modules(source) if is_forbidden(module)]
    assert not offending, offending
    assert "coffee_ranker.domain.errors" in set(imported_modules(source))
