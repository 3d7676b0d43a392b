"""The dependency direction of docs/architecture.md, checked on the source itself.

search/ is pure computation (and knows no integration); integrations/ adapts search/ to
other tools and reaches into neither service/ nor workers/; workers/ never reaches into
service/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "search": {
        "service",
        "workers",
        "integrations",
        "optuna",
        "celery",
        "kombu",
        "redis",
        "sqlalchemy",
        "fastapi",
        "httpx",
        "requests",
        "uvicorn",
        "matplotlib",
        "wandb",
    },
    "integrations": {"service", "workers", "celery", "sqlalchemy", "fastapi"},
    "workers": {"service", "fastapi", "sqlalchemy"},
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    offenders = {name: bad for name, bad in offenders.items() if bad}
    assert not offenders, f"{package}/ imports what it must not: {offenders}"


def test_search_reads_no_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "search").rglob("*.py"))
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    ]
    assert not readers, (
        f"search/ must take settings as arguments, not from the environment: {readers}"
    )


def test_forbidden_import_is_detected(tmp_path: Path) -> None:
    """The checker itself can fail: a planted import is found."""
    planted = tmp_path / "m.py"
    planted.write_text("import os\nfrom service.api import routes\nimport celery.result\n")
    assert _imported_roots(planted) & FORBIDDEN["search"] == {"service", "celery"}
