"""The import rules of docs/architecture.md, checked on the source: one arrow direction.

    cli → main → domains → dispatch → worker → serving → ml

Every import counts, those inside functions and under ``TYPE_CHECKING`` included. A package may
import its own layer's packages and any layer below; the shared modules (settings, database,
errors, metrics, storage, leases...) sit under the domains and above the core. No two
top-level packages may import each other, directly or around a loop, and ``ml`` and
``serving`` stay free of the web, the database and the broker, so they run with torch alone.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import aiaas

SRC = Path(aiaas.__file__).parent

# Highest first. A package may import its own layer and those below it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"cli", "__main__"}),
    # The app factory and what only it may see: every domain at once.
    frozenset({"main", "tasks", "models", "blobs", "migrate"}),
    frozenset(
        {
            "accounts",
            "admin",
            "datasets",
            # Feature attributions, over the predictions domain's PredictPath.
            "explanations",
            "operations",
            "predictions",
            "quotas",
            "registry",
            "trainings",
            "usage",
            # The Open Inference Protocol, over the predictions domain's service.
            "v2",
            # The web dashboard: pages over the other domains' services.
            "web",
            # The web plumbing the domains' routes stand on.
            "deps",
            "middleware",
            "http_protocol",
            "pagination",
        }
    ),
    frozenset({"dispatch"}),
    frozenset({"worker"}),
    # What task code and both transports share: above the framework-free core.
    frozenset(
        {
            "caching",
            "config",
            "context",
            "db",
            "errors",
            "events",
            "jobs",
            "logs",
            "metering",
            "metrics",
            "presence",
            "ratelimits",
            "storage",
            "tracing",
        }
    ),
    frozenset({"serving"}),
    frozenset({"ml"}),
    # The SDK: imports nothing of the server (test_the_sdk_imports_only_itself), so it can
    # ship on its own.
    frozenset({"client"}),
)
FRAMEWORK_FREE = ("ml", "serving")
FRAMEWORKS = frozenset(
    {"fastapi", "starlette", "sqlalchemy", "alembic", "celery", "kombu", "redis", "uvicorn"}
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            # `from aiaas import jobs` imports the module aiaas.jobs.
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def top_level(name: str) -> str | None:
    """The aiaas package or module ``name`` belongs to (``aiaas.x.y`` → ``x``)."""
    parts = name.split(".")
    if parts[0] != "aiaas" or len(parts) < 2:
        return None
    candidate = parts[1]
    exists = (SRC / candidate).is_dir() or (SRC / f"{candidate}.py").is_file()
    return candidate if exists else None


def package_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Top-level package → the other top-level packages it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in root.rglob("*.py"):
        source = top_level(_module_name(path))
        if source is None:
            continue
        graph[source]
        for name in imports_of(path):
            target = top_level(name)
            if target is not None and target != source:
                graph[source].add(target)
    return dict(graph)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def rank(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise KeyError(package)


def back_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Imports that point up the layers."""
    return sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        for target in targets
        if rank(target) < rank(source)
    )


def test_every_package_has_a_layer() -> None:
    graph = package_graph()
    unplaced = [name for name in graph if not any(name in layer for layer in LAYERS)]
    assert not unplaced, f"place these in LAYERS (and docs/architecture.md): {unplaced}"


def test_no_package_level_cycle() -> None:
    assert cycles(package_graph()) == []


def test_imports_point_down_the_layers() -> None:
    assert back_imports(package_graph()) == []


@pytest.mark.parametrize("package", FRAMEWORK_FREE)
def test_core_is_framework_free(package: str) -> None:
    """``ml`` and ``serving`` import only themselves and the layers below, and nothing of the
    web, the database or the broker: they run on a machine with torch alone."""
    offending = []
    for path in (SRC / package).rglob("*.py"):
        for name in imports_of(path):
            root = name.split(".")[0]
            if root in FRAMEWORKS:
                offending.append(f"{path.relative_to(SRC)}: {name}")
    assert offending == []


def test_the_sdk_imports_only_itself() -> None:
    """``aiaas.client`` runs where only httpx and numpy are installed: no other aiaas package,
    and nothing of the server's frameworks or torch (imported lazily by ``weights`` only when
    a torch module is pushed, by the caller who has torch already)."""
    offending = []
    for path in (SRC / "client").rglob("*.py"):
        for name in imports_of(path):
            package = top_level(name)
            root = name.split(".")[0]
            if (package is not None and package != "client") or root in FRAMEWORKS:
                offending.append(f"{path.relative_to(SRC)}: {name}")
    assert offending == []


def test_the_checks_catch_a_back_import() -> None:
    """The rules themselves can fail: a dispatcher that imports a domain again is caught, as a
    back-import and as a loop."""
    graph = {name: set(targets) for name, targets in package_graph().items()}
    assert back_imports(graph) == []
    assert cycles(graph) == []

    graph["dispatch"].add("predictions")

    assert back_imports(graph) == ["dispatch imports predictions"]
    assert any({"dispatch", "predictions"} <= set(loop) for loop in cycles(graph))


def test_relative_and_from_imports_are_resolved(tmp_path: Path) -> None:
    module = SRC / "dispatch" / "inprocess.py"
    found = imports_of(module)
    assert "aiaas.jobs" in found  # `from aiaas import jobs`
    assert top_level("aiaas.serving.batching") == "serving"
    assert top_level("aiaas") is None
    assert top_level("numpy") is None


def test_the_client_commands_import_only_the_sdk() -> None:
    """The command line's client commands (every ``cli`` module but ``main``, whose server
    commands import the server inside themselves) reach a platform through ``aiaas.client``
    alone, so ``aiaas login`` or ``aiaas predict`` on a laptop loads no torch or server code."""
    offending = []
    for path in (SRC / "cli").rglob("*.py"):
        if path.name in ("main.py", "__init__.py"):
            continue
        for name in imports_of(path):
            root = name.split(".")[0]
            if top_level(name) not in (None, "cli", "client") or root in {*FRAMEWORKS, "torch"}:
                offending.append(f"{path.relative_to(SRC)}: {name}")
    assert offending == []
