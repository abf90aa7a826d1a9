"""Protocol-buffer text format (Triton's ``config.pbtxt``) from plain Python values.

A message is a dict; a field's value is a scalar (str → quoted, bool, int, float), an :class:`Enum`
(written bare, e.g. ``TYPE_FP32``), a dict (a nested message), or a list: of scalars (``dims: [3, 640, 640]``)
or of dicts (one ``field { ... }`` block per element, the form every protobuf text parser accepts).
"""

from __future__ import annotations

import json


class Enum(str):
    """An enum value such as ``TYPE_FP32`` or ``KIND_GPU``: written without quotes."""


def to_pbtxt(message: dict, header: str = "") -> str:
    """``message`` as text format; ``header`` lines become ``#`` comments at the top."""
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + "".join(_fields(message, 0))


def _fields(message: dict, depth: int):
    pad = "  " * depth
    for name, value in message.items():
        if isinstance(value, dict):
            yield from _block(name, value, depth)
        elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
            for item in value:
                yield from _block(name, item, depth)
        elif isinstance(value, list):
            yield f"{pad}{name}: [{', '.join(_scalar(item) for item in value)}]\n"
        else:
            yield f"{pad}{name}: {_scalar(value)}\n"


def _block(name: str, message: dict, depth: int):
    pad = "  " * depth
    yield f"{pad}{name} {{\n"
    yield from _fields(message, depth + 1)
    yield f"{pad}}}\n"


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)   # JSON string escapes (\\ \" \n) are text-format ones
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} in protobuf text format")
