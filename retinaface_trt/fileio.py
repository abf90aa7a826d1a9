"""Atomic file output shared by every command that writes a file.

A file is written to a temporary sibling and renamed over the destination only when writing finished
without an error, so an interrupted or failed command never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from retinaface_trt.errors import RetinaFaceError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Return ``path`` as a Path after checking that writing it is allowed.

    Raises RetinaFaceError if the file exists and ``force`` is False, or if its folder does not exist.
    """
    path = Path(path)
    if path.exists() and not force:
        raise RetinaFaceError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise RetinaFaceError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", force: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, on error delete it.

    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``. With ``force=False`` an existing file is an error.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, force: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb", force=force) as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike, text: str, force: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", force=force) as handle:
        handle.write(text)
