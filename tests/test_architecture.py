"""The dependency direction of docs/architecture.md, checked on the source itself.

search/ is pure computation (and knows no integration); integrations/ adapts search/ to
other tools and reaches into neither service/ nor workers/; workers/ never reaches into
service/. Inside service/, each subpackage imports only the ones below it (the module map
in docs/architecture.md), and the API package never imports the engine, torch or a trainer.
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


# service/'s subpackages by layer: what each may not import. The top-level modules
# (config, domain, storable, logs) sit with storage at the bottom.
SERVICE_BELOW = {
    "storage": {"api", "cli", "orchestration", "reads", "interop"},
    "reads": {"api", "cli", "orchestration", "interop"},
    "orchestration": {"api", "cli", "interop"},
    "interop": {"api", "cli"},
    "api": {"cli"},
}
SERVICE_BASE = SERVICE_BELOW["storage"]
# The API process hands out buffered proposals: no engine, no torch, no trainer.
API_FORBIDDEN = (
    "torch",
    "botorch",
    "gpytorch",
    "search.engine",
    "workers.training",
    "workers.runner",
    "service.orchestration.scheduler",
    "service.orchestration.engines",
    "service.orchestration.embedded",
    "service.orchestration.control",
)


def _imported_modules(path: Path) -> set[str]:
    """Every absolute module named by an import anywhere in ``path`` (``from a import b``
    names both ``a`` and ``a.b``, which may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _imported_roots(path: Path) -> set[str]:
    return {module.split(".")[0] for module in _imported_modules(path)}


def _service_subpackages(path: Path) -> set[str]:
    """The service/ subpackages ``path`` imports (``service.reads.views`` -> ``reads``)."""
    parts = (module.split(".") for module in _imported_modules(path))
    return {p[1] for p in parts if len(p) > 1 and p[0] == "service"}


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


def test_service_subpackages_import_only_those_below() -> None:
    offenders = {}
    for path in sorted((ROOT / "service").rglob("*.py")):
        relative = path.relative_to(ROOT / "service")
        layer = relative.parts[0] if len(relative.parts) > 1 else None
        forbidden = SERVICE_BELOW.get(layer, set()) if layer else SERVICE_BASE
        bad = _service_subpackages(path) & forbidden
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"service/ layers import upwards: {offenders}"


def test_the_api_package_never_imports_the_engine_or_torch() -> None:
    offenders = {}
    for path in sorted((ROOT / "service" / "api").rglob("*.py")):
        bad = [
            module
            for module in _imported_modules(path)
            if any(module == f or module.startswith(f + ".") for f in API_FORBIDDEN)
        ]
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"service/api imports what the API process must not: {offenders}"


def test_only_the_app_imports_the_api_routes() -> None:
    """Route handlers are the HTTP surface, not a library: shared reads live in reads/ or
    orchestration/ (the control worker serves metrics without loading the routes)."""
    routes = "service.api.routes"
    importers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "service").rglob("*.py"))
        if path.parent.name != "routes"
        and path.name != "app.py"
        and any(m == routes or m.startswith(routes + ".") for m in _imported_modules(path))
    ]
    assert not importers, f"these import route handlers: {importers}"


def test_no_service_module_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / "service").rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long, f"split these along a real seam: {long}"


def test_upward_service_import_is_detected(tmp_path: Path) -> None:
    """The layer checker can fail: a planted upward import is found."""
    planted = tmp_path / "m.py"
    planted.write_text("from service.api.app import create_app\nfrom service import reads\n")
    assert _service_subpackages(planted) == {"api", "reads"}
