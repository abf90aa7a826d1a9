"""The layout's rules, checked on the source: no import cycle between modules, at module or function level."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("retinaface_trt", "network", "wts_export", "runtime")   # lowest layer first
ENTRY_POINTS = {"retinaface_trt.__main__"}     # executed, never imported: the top of the graph by definition


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, modules: dict) -> set[str]:
    """Project modules that ``path`` imports anywhere (module level, inside functions, under TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # "from pkg import mod" depends on pkg.mod (pkg's __init__ runs first in any case, as the parent of
            # every submodule: that is not an edge); "from mod import name" depends on mod.
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {t for t in targets if t in modules and t != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items() if name not in ENTRY_POINTS}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's members, one list per strongly connected component of more than one module."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
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


def test_no_import_cycles_between_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_are_layered():
    # retinaface_trt (errors, files) ← network ← wts_export ← runtime: no package imports one to its right.
    order = {package: rank for rank, package in enumerate(PACKAGES)}
    upward = [f"{source} imports {target}" for source, targets in import_graph().items() for target in targets
              if order[target.split(".")[0]] > order[source.split(".")[0]]]
    assert upward == []
