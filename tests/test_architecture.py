"""The import directions of ARCHITECTURE.md, checked on the source.

- Nothing in ``oncall/`` imports ``workers/``, except the command line, which is
  where the processes are put together (it starts the worker and the scheduler).
- Use cases (services, checks, queries of each domain) never read Flask's request
  objects: they take the acting user and ``now`` as parameters.
- Models import no services, views or schemas.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "oncall"
USE_CASE_FILES = {"services.py", "checks.py", "queries.py", "assignment.py", "writes.py"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in ``path``, nested ones included."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_oncall_does_not_import_workers(path: Path) -> None:
    if path == PACKAGE / "cli.py":
        return
    offending = [m for m, _ in _imports(path) if m == "workers" or m.startswith("workers.")]
    assert not offending, f"{path.name} imports {offending}"


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if p.name in USE_CASE_FILES],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_use_cases_do_not_read_the_request(path: Path) -> None:
    for module, names in _imports(path):
        if module == "flask":
            assert not {"request", "g", "session"} & set(names), f"{path} reads {names}"


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if p.name == "models.py"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_models_import_no_use_cases_or_views(path: Path) -> None:
    for module, _ in _imports(path):
        tail = module.rsplit(".", 1)[-1]
        assert tail not in {"services", "api", "schemas", "views"}, f"{path} imports {module}"


def test_the_checks_see_every_domain() -> None:
    domains = {p.parent.name for p in SOURCES if p.name == "services.py"}
    assert {"accounts", "calls", "circles", "rota", "visits"} <= domains


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "notify").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_notify_knows_messages_not_visits_or_alerts(path: Path) -> None:
    """ARCHITECTURE.md: alerts -> notify, never the reverse; notify knows no visits."""
    for module, _ in _imports(path):
        assert not module.startswith(("oncall.alerts", "oncall.visits")), (
            f"{path} imports {module}"
        )


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "alerts").rglob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_alerts_do_not_use_visit_use_cases(path: Path) -> None:
    """visits -> alerts (arming deadlines): alerts may read visit rows and share the visit
    domain's checks, but never call its use cases or views (that would run both ways)."""
    for module, _ in _imports(path):
        assert module not in {"oncall.visits.services", "oncall.visits.api"}, (
            f"{path} imports {module}"
        )
