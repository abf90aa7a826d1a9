"""Which TensorRT names the project's TensorRT code touches, read from its source with ``ast``.

Two kinds of use are collected from :data:`SCANNED`:

* module names: attribute chains rooted at the name ``trt`` (``trt.BuilderFlag.TF32`` → ("BuilderFlag", "TF32"));
* member names: every other ``obj.attr`` whose receiver is not one of the project's own objects
  (:data:`PROJECT_RECEIVERS`, e.g. ``self``, ``options``); whether it is a TensorRT member is decided
  by the caller against the real surfaces.

Guards: a use inside the body of an ``if`` (or conditional expression) whose test contains
``hasattr(X, "NAME")`` is *guarded* (``Use.guarded`` holds the NAMEs). A guarded module name in NAMEs
needs to exist only in some versions; a guarded member call needs to be exercised by the probes in at
least one version (the body runs only where the guard holds, and there the probe checks it). Nothing
else counts as a guard: no version-number comparisons, and the else-branch is unguarded.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("runtime/backends/tensorrt/compat.py", "runtime/backends/tensorrt/build.py",
           "runtime/backends/tensorrt/build_onnx.py", "runtime/backends/tensorrt/engine.py",
           "runtime/backends/tensorrt/cache.py", "runtime/backends/tensorrt/calibrator.py", "network/postprocess.py",
           "network/quantize.py")
# Receivers that are the project's or Python's own objects (PyTorch tensors and devices included), never
# TensorRT ones.
PROJECT_RECEIVERS = {"self", "options", "log", "target", "time", "hashlib", "np", "trt_compat", "error",
                     "cache", "report", "logging", "shapes", "p", "info", "self._steps",
                     "sidecar", "math", "weakref", "torch", "torch.cuda", "batch", "staged", "resolved", "tensor",
                     "self._cuda", "self._handles", "h", "self.info", "cache_file", "path", "path.parent",
                     "folder", "Path", "os", "re", "device", "settings", "postprocess", "net.cfg", "net",
                     "contextlib", "sys", "json", "type(resolved)", "torch.cuda.current_stream(device)",
                     "self.fixed_input_size", "b", "parts", "kept", "names", "cal", "self._current", "self.settings",
                     "self.calibrator", "self._current.device", "calibrator", "options.int8", "self.plan",
                     "self._pairs", "self.plan.keep", "self.counts", "magnitude", "histogram", "histogram.counts",
                     "self._matched", "self.points", "kernel", "scale", "amax",
                     "self.counts.reshape(BINS // 2, 2)", "bins.flatten()", "bins.flatten().cpu()", "counts",
                     "q", "q[mass]", "p[mass]", "np.add", "x.detach()", "x.detach().abs()",
                     "kept.copy()", "magnitude / self.width", "(magnitude / self.width).floor_()",
                     "magnitude.max()", "self._batches", "net.weights", "net.quantization",
                     "builder", "profile"}


@dataclass(frozen=True)
class Use:
    file: str
    line: int
    names: tuple[str, ...]        # ("BuilderFlag", "TF32") for module uses, ("set_flag",) for members
    guarded: frozenset[str]       # names made safe by an enclosing hasattr guard


def _hasattr_names(test: ast.AST) -> set[str]:
    return {node.args[1].value for node in ast.walk(test)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr"
            and len(node.args) == 2 and isinstance(node.args[1], ast.Constant)}


class _Collector(ast.NodeVisitor):
    def __init__(self, file: str):
        self.file, self.guards = file, [frozenset()]
        self.module_uses: list[Use] = []
        self.member_uses: list[Use] = []

    def _guarded(self, test, body, orelse):
        self.visit(test)
        self.guards.append(self.guards[-1] | _hasattr_names(test))
        for node in body if isinstance(body, list) else [body]:
            self.visit(node)
        self.guards.pop()
        for node in orelse if isinstance(orelse, list) else [orelse]:
            self.visit(node)

    def visit_If(self, node):
        self._guarded(node.test, node.body, node.orelse)

    def visit_IfExp(self, node):
        self._guarded(node.test, node.body, node.orelse)

    def visit_Attribute(self, node):
        chain, root = [], node
        while isinstance(root, ast.Attribute):
            chain.insert(0, root.attr)
            root = root.value
        if isinstance(root, ast.Name) and root.id == "trt":
            self.module_uses.append(Use(self.file, node.lineno, tuple(chain), self.guards[-1]))
            return                      # the whole chain is one module use
        receiver = ast.unparse(node.value)
        if receiver not in PROJECT_RECEIVERS:
            self.member_uses.append(Use(self.file, node.lineno, (node.attr,), self.guards[-1]))
        self.generic_visit(node)


def scan(files=SCANNED) -> tuple[list[Use], list[Use]]:
    """(module uses, member uses) of the given source files (paths relative to the repository)."""
    module_uses, member_uses = [], []
    for file in files:
        collector = _Collector(file)
        collector.visit(ast.parse((REPO / file).read_text(), filename=file))
        module_uses += collector.module_uses
        member_uses += collector.member_uses
    return module_uses, member_uses
