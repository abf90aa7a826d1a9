"""Signatures of the real TensorRT bindings, read from pybind11 docstrings, and value checks against them.

pybind11 writes each function's signature as the first docstring line, e.g.
``add_resize(self: tensorrt_bindings.tensorrt.INetworkDefinition, input: ...ITensor) -> ...IResizeLayer``;
an overloaded function starts with ``name(*args, **kwargs)`` followed by ``1. name(...)``, ``2. ...``.
A property's getter docstring is ``(arg0: Class) -> Type``. Type names are normalised by dropping the
module prefixes (``tensorrt_bindings.tensorrt.``, ``typing.``, ``nvinfer1::``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PREFIXES = ("tensorrt_bindings.tensorrt.", "tensorrt.", "typing_extensions.", "typing.", "collections.abc.")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None     # the default's text, None when the argument is required


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]    # without self
    returns: str

    def names(self) -> list[str]:
        return [p.name for p in self.params]


def normalise_type(text: str) -> str:
    for prefix in _PREFIXES:
        text = text.replace(prefix, "")
    text = re.sub(r"\bnvinfer1::(\w+::)*", "", text)
    return text.strip()


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets ([], (), <>)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[(<"
        depth -= ch in "])>"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def _parse_line(line: str) -> Signature | None:
    match = re.match(r"^\s*(?:\d+\.\s*)?[\w.]*\((.*)\)\s*->\s*(.+?)\s*$", line)
    if not match:
        return None
    params = []
    for part in _split_top(match.group(1)):
        name, _, rest = part.partition(":")
        type_text, _, default = rest.partition(" = ")
        params.append(Param(name.strip(), normalise_type(type_text), default.strip() or None))
    if params and params[0].name in ("self", "arg0"):
        params = params[1:]
    return Signature(tuple(params), normalise_type(match.group(2)))


def signatures(func) -> list[Signature]:
    """Every overload signature of a pybind11 function or method (empty if it has no docstring)."""
    doc = getattr(func, "__doc__", None) or ""
    lines = doc.strip().splitlines()
    if not lines:
        return []
    if "(*args, **kwargs)" not in lines[0]:
        sig = _parse_line(lines[0])
        return [sig] if sig else []
    return [s for s in (_parse_line(l) for l in lines if re.match(r"^\s*\d+\.\s", l)) if s]


def property_type(prop: property) -> str | None:
    """The type a pybind11 property returns, from its getter's docstring."""
    sigs = signatures(prop.fget) if prop.fget is not None else []
    return sigs[0].returns if sigs else None


def bind_problem(sig: Signature, args: tuple, kwargs: dict) -> str | None:
    """Why ``args``/``kwargs`` cannot bind to ``sig`` (argument count and names only), or None."""
    names = sig.names()
    if any(p.name.startswith("*") for p in sig.params):
        return None
    if len(args) > len(names):
        return f"{len(args)} positional arguments, at most {len(names)} accepted"
    for key in kwargs:
        if key not in names:
            return f"no argument named {key!r} (arguments: {', '.join(names)})"
        if names.index(key) < len(args):
            return f"argument {key!r} given twice"
    given = set(names[:len(args)]) | set(kwargs)
    missing = [p.name for p in sig.params if p.default is None and p.name not in given]
    return f"missing required argument(s) {', '.join(missing)}" if missing else None


def bound_values(sig: Signature, args: tuple, kwargs: dict) -> list[tuple[Param, object]]:
    """(param, value) pairs of a call that :func:`bind_problem` accepted."""
    pairs = list(zip(sig.params, args))
    by_name = {p.name: p for p in sig.params}
    return pairs + [(by_name[k], v) for k, v in kwargs.items()]
