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


# The contracts (docs/architecture.md, "Contracts") ---------------------------------------------------------------
RECORD_MODULE = "retinaface_trt.detections"
# The original pipeline written again, on purpose independent of the project's code (docs/architecture.md).
INDEPENDENT = {"runtime.benchmark.original"}


def _trees():
    for name, path in _modules().items():
        yield name, ast.parse(path.read_text(), filename=str(path))


def _layout_column(node: ast.AST) -> bool:
    """A literal column of the detection row: 4 (the score), or a slice of the box (..4) or landmarks (5..)."""
    if isinstance(node, ast.Constant):
        return node.value == 4
    if isinstance(node, ast.Slice) and node.step is None:
        low = node.lower.value if isinstance(node.lower, ast.Constant) else (None if node.lower is None else "?")
        high = node.upper.value if isinstance(node.upper, ast.Constant) else (None if node.upper is None else "?")
        return (low, high) in {(None, 4), (0, 4), (5, 15), (5, None)}
    return False


def column_reads(tree: ast.AST) -> list[int]:
    """Lines that index the last axis of a 2-D or batched array by a literal detection column: ``a[:, 4]``,
    ``a[..., 5:15]``, ``a[:, :4]``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple) and len(node.slice.elts) >= 2:
            first, last = node.slice.elts[0], node.slice.elts[-1]
            leading = (isinstance(first, ast.Slice) and first.lower is first.upper is first.step is None) or (
                isinstance(first, ast.Constant) and first.value is Ellipsis)
            if leading and _layout_column(last):
                lines.append(node.lineno)
    return lines


def test_the_column_finder_finds_detection_columns():
    found = column_reads(ast.parse("a[:, 4]\nb[..., 5:15]\nc[:, :4]\nd[:, 0::2]\ne[:, SCORE]\nf[:, :2]\ng[:, 5:]"))
    assert found == [1, 2, 3, 7]


def test_only_the_record_module_reads_detection_columns_by_number():
    reads = {name: column_reads(tree) for name, tree in _trees() if name != RECORD_MODULE and name not in INDEPENDENT}
    assert {name: lines for name, lines in reads.items() if lines} == {}


def test_the_row_width_is_defined_once():
    widths = [name for name, tree in _trees() for node in ast.walk(tree) if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name) and target.id.endswith("WIDTH")
              and isinstance(node.value, ast.Constant) and node.value.value == 15]
    assert widths == [RECORD_MODULE]


def test_nothing_probes_a_backend_with_getattr():
    """Every capability is an attribute of runtime.backends.base.Backend with its default."""
    probes = [f"{name}:{node.lineno}" for name, tree in _trees() for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and node.args and "backend" in ast.unparse(node.args[0]).lower()]
    assert probes == []


def test_every_backend_class_is_a_backend():
    classes = [(name, node) for name, tree in _trees() if name.startswith("runtime.backends")
               for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name.endswith("Backend")]
    assert len(classes) >= 5
    assert [f"{name}.{node.name}" for name, node in classes
            if node.name != "Backend" and "Backend" not in [ast.unparse(base) for base in node.bases]] == []


def test_one_thresholds_class():
    """No second class holds detect.py's thresholds (DetectionOptions and PostprocessSettings did, in two orders)."""
    holders = [f"{name}.{node.name}" for name, tree in _trees() for node in ast.walk(tree)
               if isinstance(node, ast.ClassDef)
               and {"confidence_threshold", "nms_threshold"} <= {t.target.id for t in node.body
                                                                 if isinstance(t, ast.AnnAssign)
                                                                 and isinstance(t.target, ast.Name)}]
    assert holders == ["retinaface_trt.thresholds.Thresholds"]


def test_no_module_outside_the_cli_imports_it():
    """Job code receives typed settings from the CLI and never calls back into it."""
    inward = [f"{source} imports {target}" for source, targets in import_graph().items() for target in targets
              if target.startswith("runtime.cli") and not source.startswith("runtime.cli")]
    assert inward == []


def test_only_the_cli_knows_argparse():
    """Settings objects cross into the library, never the argparse namespace."""
    users = [name for name, tree in _trees() if not name.startswith("runtime.cli") for node in ast.walk(tree)
             if isinstance(node, (ast.Import, ast.ImportFrom))
             and "argparse" in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module])]
    assert users == []
