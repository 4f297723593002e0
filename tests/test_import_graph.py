"""The import graph of ``src/iconosearch`` has no cycles, between modules or between packages.

Edges are the imports that run when a module is imported: module-level ``import``/``from`` statements
(also inside module-level ``if``/``try``), not those under ``if TYPE_CHECKING:`` and not those inside
functions. Function-level imports are the deliberate lazy ones (heavy libraries, optional parts, the
registries' factories); they run after every module involved is fully initialised, so they cannot fail
the way an import cycle does. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so those
are edges too. A package is ``iconosearch.<name>`` (a subpackage or a top-level module).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "iconosearch"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.extend(i for n in node.orelse for i in _runtime_imports(ast.Module([n], [])))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        found.extend(_runtime_imports(node))
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        # ``from pkg import name`` imports the module ``pkg.name`` when there is one.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return {p for n in names for p in _with_parents(n) if p in modules}


def import_graph() -> dict[str, set[str]]:
    """Module → the ``iconosearch`` modules importing it runs."""
    files = {_module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        deps = {t for node in _runtime_imports(tree) for t in _targets(node, module, is_package, modules)}
        # A module's parent packages run before it: a package ``__init__`` that imports its own modules
        # is a cycle here (and a real one as soon as a module uses a name from that ``__init__``).
        graph[module] = deps - {module}
    return graph


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_the_graph_sees_the_imports() -> None:
    graph = import_graph()
    walk = graph["iconosearch.harvest.walk"]
    # Absolute imports, their parent packages, and ``from pkg import module``.
    assert {"iconosearch.harvest.run", "iconosearch.harvest", "iconosearch.iiif.collection"} <= walk
    assert "iconosearch.api.schemas" in graph["iconosearch.api.routes"]
    # Neither TYPE_CHECKING imports nor function-level ones.
    assert "iconosearch.harvest.run" not in graph["iconosearch.source_kinds"]
    assert "iconosearch.iiif.local" not in walk


def test_no_module_import_cycles() -> None:
    assert _cycle(import_graph()) is None


def test_no_package_import_cycles() -> None:
    packages: dict[str, set[str]] = {}
    for module, deps in import_graph().items():
        own = _package(module)
        packages.setdefault(own, set()).update(_package(d) for d in deps if _package(d) != own)
    assert _cycle(packages) is None


def test_a_cycle_is_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
