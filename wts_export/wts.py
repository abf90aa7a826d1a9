"""The tensorrtx ``.wts`` weight format: write it bit-exactly, read it strictly.

A ``.wts`` file is ASCII text, one record per line, ``\\n`` line ends::

    253
    body.stage1.0.0.weight 216 3e1a2b3c bd0f00aa ...
    body.stage1.0.1.weight 8 3f80d1e2 ...

* Line 1: the number of entries, a decimal integer.
* Then one line per tensor: its name (PyTorch state_dict name, no whitespace), the number of values
  (a decimal integer), then each value as exactly 8 hexadecimal digits: the big-endian IEEE-754 bits of
  the float32 value (``1.0`` is ``3f800000``, ``-0.0`` is ``80000000``; NaN payloads survive).
* Fields are separated by any run of spaces or tabs (tensorrtx's own exporter writes two spaces after
  the count). The tensor is flattened in C order; its shape is NOT stored: the reader of the file
  (the network builder) knows it from the layer it is building.

This writer emits lowercase hex with single spaces and skips ``num_batches_tracked`` (a BatchNorm
training counter, not a weight). The reader returns flat float32 arrays in file order and rejects
anything that is not exactly this format, naming the file and the 1-based line.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np

from network.weights import IGNORED_SUFFIX
from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import atomic_write

_INTEGER = re.compile(r"[0-9]+")


class WtsSummary(NamedTuple):
    """What :func:`write_wts` wrote: the number of entries and of float32 values."""

    entries: int
    values: int


def _as_float32(value) -> np.ndarray:
    if hasattr(value, "detach"):   # a torch.Tensor, possibly on a GPU
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32).reshape(-1)


def encode_values(values: np.ndarray) -> str:
    """Return the flat float32 ``values`` as space-separated 8-digit big-endian hex words."""
    return values.astype(">f4").tobytes().hex(" ", 4)


def write_wts(tensors: Mapping[str, object], path: str | os.PathLike, force: bool = False) -> WtsSummary:
    """Write ``tensors`` (name → tensor or array-like) to ``path`` in the ``.wts`` format, atomically.

    Values are converted to float32; ``*num_batches_tracked`` entries are skipped. Refuses to overwrite an
    existing file unless ``force``. Raises RetinaFaceError for a name that the format cannot hold.
    """
    kept = {name: value for name, value in tensors.items() if not name.endswith(IGNORED_SUFFIX)}
    for name in kept:
        if not name or any(c.isspace() for c in name):
            raise RetinaFaceError(f"cannot write the weight name {name!r} to .wts: names must be non-empty "
                                  "and contain no whitespace")
    values = 0
    with atomic_write(path, "w", force=force) as handle:
        handle.write(f"{len(kept)}\n")
        for name, value in kept.items():
            flat = _as_float32(value)
            values += flat.size
            handle.write(f"{name} {flat.size}{' ' if flat.size else ''}{encode_values(flat)}\n")
    return WtsSummary(len(kept), values)


def _fail(path: Path, line: int, expected: str, found: str) -> RetinaFaceError:
    return RetinaFaceError(f"{path}: line {line}: expected {expected}, found {found}; "
                           "re-export the file with `retinaface-trt export-wts`")


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _is_hex_word(word: str) -> bool:
    return len(word) == 8 and all(c in string.hexdigits for c in word)


def _decode_values(words: list[str], path: Path, line: int) -> np.ndarray:
    """Parse hex words into float32, keeping every bit; raise naming the first bad word."""
    if all(len(w) == 8 for w in words):
        try:   # fast path: one C-level parse for the whole line
            raw = np.frombuffer(bytes.fromhex("".join(words)), dtype=">u4")
            return raw.astype(np.uint32).view(np.float32)
        except ValueError:
            pass
    index, word = next((i, w) for i, w in enumerate(words) if not _is_hex_word(w))
    raise _fail(path, line, f"value {index + 1} as exactly 8 hex digits", _shorten(word))


def _parse_entry(text: str, path: Path, line: int) -> tuple[str, np.ndarray]:
    fields = text.split()
    if not fields:
        raise _fail(path, line, "an entry 'name count hex…'", "an empty line")
    if len(fields) < 2:
        raise _fail(path, line, f"'{fields[0]} count hex…'", "no value count after the name")
    name, count = fields[0], fields[1]
    if not _INTEGER.fullmatch(count):
        raise _fail(path, line, f"the value count of {name} as a decimal integer", _shorten(count))
    if int(count) != len(fields) - 2:
        raise _fail(path, line, f"{count} values for {name} (its count field)", f"{len(fields) - 2} values")
    return name, _decode_values(fields[2:], path, line)


def _read_lines(path: Path) -> list[str]:
    if path.exists() and not path.is_file():   # a folder, a FIFO (reading would wait forever), a device
        raise RetinaFaceError(f"{path} is not a regular file; expected a .wts text file")
    try:
        text = path.read_bytes().decode("ascii")
    except FileNotFoundError:
        raise RetinaFaceError(f"{path} not found; create it with `retinaface-trt export-wts CHECKPOINT {path}`") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RetinaFaceError(f"cannot read {path} as a .wts text file: {error}") from None
    lines = text.split("\n")
    if lines[-1] == "":   # the final line end
        lines.pop()
    if not lines:
        raise RetinaFaceError(f"{path}: the file is empty; expected the entry count on line 1")
    return lines


def read_wts(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.wts`` file into ``{name: flat float32 array}`` in file order.

    Strict: a bad count line, a line with the wrong number of values, a word that is not 8 hex digits, a
    duplicate name, a missing or an extra line each raise one RetinaFaceError naming the file and line.
    """
    path = Path(path)
    lines = _read_lines(path)
    header = lines[0].strip()
    if not _INTEGER.fullmatch(header):
        raise _fail(path, 1, "the number of entries as a decimal integer", _shorten(lines[0]))
    count, weights, first_line = int(header), {}, {}
    for line, text in enumerate(lines[1:count + 1], start=2):
        name, values = _parse_entry(text, path, line)
        if name in weights:
            raise _fail(path, line, f"a new name ({name} was already defined on line {first_line[name]})",
                        "a duplicate")
        weights[name], first_line[name] = values, line
    if len(lines) - 1 < count:
        raise _fail(path, len(lines) + 1, f"entry {len(lines)} of {count} (line 1 says {count})", "the end of the file")
    if len(lines) - 1 > count:
        raise _fail(path, count + 2, f"the end of the file after {count} entries (line 1 says {count})",
                    _shorten(lines[count + 1]))
    return weights
