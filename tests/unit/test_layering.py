"""The package's layering, read from the source with `ast`: pure modules stay pure, and no import circles.

Every `import` counts, also those inside functions: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where each installed package's sources live (setup.cfg's package_dir).
SOURCES = {"atlas": ROOT / "atlas", "atlas.agents": ROOT / "agents", "atlas.tables": ROOT / "tables",
           "atlas.web": ROOT / "web", "atlas.infra": ROOT / "infra"}

# The pure core: plain Python, no framework, no broker, no web, no app.
PURE_PACKAGES = ("atlas.core", "atlas.oms", "atlas.venue", "atlas.analytics")
PURE_MODULES = ("atlas.audit.format", "atlas.audit.replay")
# Third-party packages that do I/O or run the app; a pure module imports none of them.
FRAMEWORKS = ("faust", "mode", "aiokafka", "aiohttp", "boto3", "botocore", "rocksdict")
# What each part may import of ATLAS besides itself: the README's architecture table.
_RUNNING = ("atlas.analytics", "atlas.app", "atlas.audit", "atlas.core", "atlas.oms", "atlas.runtime",
            "atlas.settings", "atlas.tables", "atlas.topics", "atlas.venue")
MAY_IMPORT = {
    "atlas.core": (),
    "atlas.oms": ("atlas.core",),
    "atlas.venue": ("atlas.core",),
    "atlas.analytics": ("atlas.core", "atlas.oms"),
    # atlas.infra.athena: the SQL the audit CLI runs (a folder of .sql files, no code).
    "atlas.audit": ("atlas.core", "atlas.oms", "atlas.runtime", "atlas.settings", "atlas.infra.athena"),
    "atlas.runtime": ("atlas.core", "atlas.settings"),
    "atlas.settings": (),
    "atlas.app": ("atlas.runtime", "atlas.settings"),
    "atlas.topics": ("atlas.app", "atlas.settings"),
    "atlas.tables": ("atlas.app", "atlas.core", "atlas.oms", "atlas.settings", "atlas.venue"),
    "atlas.agents": _RUNNING,
    "atlas.web": (*_RUNNING, "atlas.agents", "atlas.cloud"),
    "atlas.cloud": ("atlas.audit", "atlas.core", "atlas.oms", "atlas.runtime", "atlas.settings"),
    "atlas.infra": (),
}


def _module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            # A folder of its own (atlas/agents is not a module of atlas/): the nearest source wins.
            if name not in found or len(path.parts) < len(found[name].parts):
                found[name] = path
    return found


MODULES = _module_files()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports: absolute names, `from X import y` resolved to X.y when y is a module."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is_pure(name: str) -> bool:
    return name in PURE_MODULES or any(name == p or name.startswith(p + ".") for p in PURE_PACKAGES)


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_source_map_finds_every_subpackage():
    for package in (*PURE_PACKAGES, "atlas.audit", "atlas.runtime", "atlas.agents", "atlas.tables", "atlas.web"):
        assert package in MODULES, package
    assert "atlas.oms.engine" in GRAPH["atlas.agents.oms"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _is_pure(n)))
def test_pure_module_imports_only_pure_modules_and_no_framework(name):
    atlas_imports = {m for m in GRAPH[name] if m == "atlas" or m.startswith("atlas.")}
    impure = sorted(m for m in atlas_imports if not _is_pure(m))
    frameworks = sorted(m for m in GRAPH[name] if _within(m, FRAMEWORKS))
    assert impure == [] and frameworks == [], f"{name} imports {impure + frameworks}"


def _part(name: str) -> str | None:
    return next((p for p in sorted(MAY_IMPORT, key=len, reverse=True) if _within(name, (p,))), None)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _part(n)))
def test_module_imports_only_what_its_part_may(name):
    own = _part(name)
    allowed = (own, *MAY_IMPORT[own])
    outside = sorted(m for m in GRAPH[name] if _within(m, ("atlas",)) and not _within(m, allowed))
    assert outside == [], f"{name} ({own}) imports {outside}"


def test_pure_rule_catches_a_lazy_framework_import(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from faust import App\n    from atlas.tables import oms\n")
    assert {"faust", "atlas.tables.oms"} <= _imports("atlas.oms.probe", path)


def test_no_import_circle_among_atlas_modules():
    """Depth-first over the graph of atlas modules; a back edge is a circle."""
    edges = {name: sorted(m for m in deps if m in MODULES and m != name) for name, deps in GRAPH.items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == []
