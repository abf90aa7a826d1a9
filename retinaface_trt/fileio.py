"""File output shared by every command that writes a file: checked first, written atomically.

Conventions:

* **Atomic.** A file is written to a temporary sibling ``.<name>.<pid>.<8 hex digits>.part`` and renamed over
  the destination only when writing finished without an error, so an interrupted or failed command never
  leaves a half-written file at a final name.
* **Stale parts.** While a part file is written, its writer holds an exclusive ``flock`` on it. A part file
  whose lock is free and whose writer (the pid in its name) is no longer running was left by a killed run
  (``kill -9``, power loss): :func:`check_writable` and :func:`check_output_dir`, which every command calls for
  its outputs before any work, remove those of the folder they check.
* **Permissions.** A new file gets the usual ``0o666`` minus the umask (as ``open()`` gives); a replaced file
  keeps its mode.
* **Streams.** ``-`` is standard output; ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` and any existing file
  that is neither regular nor a folder (a character device, a FIFO) are written in place: there is nothing
  to rename over, and ``force`` does not apply.
* **One writer.** :func:`hold_output` claims a destination for a whole run (a ``flock`` on ``.<name>.lock`` beside
  it, removed at the end; a killed run's lock dies with it), so that a second run on the same output is refused
  instead of interleaving with the first or replacing its records. :func:`check_not_an_input` refuses an output
  that is one of the command's inputs.
* **Errors.** Every refusal and every ``OSError`` while writing is one :class:`RetinaFaceError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import sys
from pathlib import Path
from typing import IO, Iterator

from retinaface_trt.errors import RetinaFaceError

STDOUT = "-"
_STREAM_PATH = re.compile(r"^/dev/(stdout|stderr|fd/\d+)$|^/proc/self/fd/\d+$")
_PART_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.part$")


def is_stream(path: str | os.PathLike) -> bool:
    """True for ``-``, ``/dev/stdout``-like names and existing files that are neither regular nor folders."""
    text = os.fspath(path)
    if text == STDOUT or _STREAM_PATH.match(text):
        return True
    try:
        mode = os.stat(text).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Return ``path`` as a Path once it is known that writing it will work; call it before any work.

    Refused (RetinaFaceError): a folder; an existing file without ``force``; a folder where no file can be
    created (read-only, no permission: tried by creating and removing a part file). A missing folder is
    created when the file is written (as ``--save-dir`` is), so its nearest existing parent is tried instead.
    Stale part files of that folder are removed. Streams (see the module doc) are accepted as they are.
    """
    text = os.fspath(path)
    if not text.strip():
        raise RetinaFaceError("the output file name is empty; expected a file name such as out.json")
    if text.endswith(("/", os.sep)) and not is_stream(text):
        raise RetinaFaceError(f"cannot write {text}: it names a folder; expected a file name such as "
                              f"{os.path.join(text, 'out.json')}")
    path = Path(path)
    if is_stream(path):
        return path
    _check_destination(path, force)
    if path.parent.is_dir():
        _probe(path)
        remove_stale_parts(path.parent)
    else:
        check_output_dir(path.parent)
    return path


@contextlib.contextmanager
def hold_output(path: str | os.PathLike, hint: str = "wait for it to finish, or pass another file") -> Iterator[None]:
    """Hold the claim on writing ``path`` until the block ends; RetinaFaceError at once if another process holds
    it. Streams need no claim. Without ``flock`` (not POSIX) nothing is held."""
    path = Path(path)
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if is_stream(path) or fcntl is None:
        yield
        return
    lock = path.parent / f".{path.name}.lock"
    if not path.parent.is_dir():          # output files get their missing folders (as atomic_write's)
        make_dirs(path.parent)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as error:
        raise _write_error(path, error) from None
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.stat(lock).st_ino == os.fstat(fd).st_ino    # not a lock file its holder just removed
        except BlockingIOError:
            pass
        except FileNotFoundError:
            pass
        if not held:
            raise RetinaFaceError(f"{path} is being written by another run (it holds {lock.name}); {hint}")
        yield
    finally:
        if held:
            with contextlib.suppress(OSError):
                os.unlink(lock)
        os.close(fd)


def check_not_an_input(path: str | os.PathLike, inputs, what: str = "the output") -> None:
    """RetinaFaceError if ``path`` names the same file as one of ``inputs`` (writing it would replace an input)."""
    if is_stream(path) or not os.path.exists(path):
        return
    for source in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, source):
                raise RetinaFaceError(f"{what} {path} is the input {source}: writing it would replace that input; "
                                      "choose another file name")


def check_output_dir(folder: str | os.PathLike) -> Path:
    """Return ``folder`` as a Path once it is known that files can be written in it (it may not exist yet:
    then its nearest existing parent is tried); stale part files in it are removed. RetinaFaceError if not."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RetinaFaceError(f"{folder} is a file; expected a folder to write into (or a path to create)")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RetinaFaceError(f"cannot create folder {folder}: {existing} is a file")
    _probe(existing / folder.name)
    remove_stale_parts(folder)
    return folder


def make_dirs(folder: str | os.PathLike) -> Path:
    """``os.makedirs(folder, exist_ok=True)`` with an OSError turned into one RetinaFaceError line."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise _write_error(Path(folder), error, "cannot create folder") from None
    return Path(folder)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", force: bool = True) -> Iterator[IO]:
    """Open a part file beside ``path``; on success rename it to ``path``, on any error delete it.

    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``. With ``force=False`` an existing file is an error. Missing
    folders of ``path`` are created. An OSError while writing becomes a RetinaFaceError naming ``path``. Streams
    are written in place.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    if is_stream(path):
        with _open_stream(path, mode) as handle:
            yield handle
        return
    _check_destination(path, force)
    if not path.parent.is_dir():
        make_dirs(path.parent)
    fd, part = _create_part(path)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(part)
        if isinstance(error, OSError):
            raise _write_error(path, error) from None
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, force: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb", force=force) as handle:
        handle.write(data)


def write_text_atomic(path: str | os.PathLike, text: str, force: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", force=force) as handle:
        handle.write(text)


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Delete the part files in ``folder`` left by runs that were killed; return their paths.

    A part file is stale when the process named in it is not running and nobody holds its lock (the lock
    also protects writers of other hosts or PID namespaces sharing the folder). Only POSIX systems.
    """
    if os.name != "posix":
        return []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        match = _PART_NAME.match(name)
        part = Path(folder) / name
        if match and not _process_running(int(match.group(1))) and not _locked(part):
            with contextlib.suppress(OSError):
                part.unlink()
                removed.append(part)
    return removed


def _check_destination(path: Path, force: bool) -> None:
    if path.is_dir():
        raise RetinaFaceError(f"cannot write {path}: it is a folder; expected a file name such as "
                              f"{path / 'out.json'}")
    if path.exists() and not force:
        raise RetinaFaceError(f"{path} already exists; pass --force to overwrite it")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RetinaFaceError(f"cannot write {path}: {existing} is a file, not a folder")


def _create_part(path: Path) -> tuple[int, str]:
    """Create and lock a new part file beside ``path`` (mode 0o666 minus the umask, or ``path``'s mode)."""
    try:
        keep_mode = stat.S_IMODE(os.stat(path).st_mode) if path.is_file() else None
        fd, part = _new_part(path)
    except OSError as error:
        raise _write_error(path, error) from None
    if keep_mode is not None:
        with contextlib.suppress(OSError):   # a mode we may not set (another owner's file) is not worth failing
            os.fchmod(fd, keep_mode)
    _lock(fd)
    return fd, part


def _new_part(path: Path) -> tuple[int, str]:
    while True:
        part = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
        try:
            return os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), str(part)
        except FileExistsError:
            continue


def _probe(path: Path) -> None:
    """Create and remove a part file for ``path``: the only test that a folder takes files (root, read-only
    mounts and ACLs all defeat a look at the permission bits)."""
    fd, part = _create_part(path)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(part)


def _lock(fd: int) -> None:
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (ImportError, OSError):   # no flock here (or on this file system): the pid check remains
        pass


def _locked(part: Path) -> bool:
    """True when another open file holds the lock of ``part`` (so its writer is alive)."""
    try:
        import fcntl

        fd = os.open(part, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (ImportError, OSError):
        return True   # cannot tell: keep it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)   # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True   # it exists under another user (or the number is not a pid: keep the file)
    return True


@contextlib.contextmanager
def _open_stream(path: Path, mode: str) -> Iterator[IO]:
    """Standard output for ``-`` (left open), otherwise the stream opened for appending."""
    if os.fspath(path) == STDOUT:
        handle = sys.stdout.buffer if mode == "wb" else sys.stdout
        yield handle
        handle.flush()
        return
    try:
        handle = open(path, mode.replace("w", "a"), **({"encoding": "utf-8"} if mode == "w" else {}))
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        with handle:
            yield handle
    except OSError as error:
        raise _write_error(path, error) from None


def _write_error(path: Path, error: OSError, what: str = "cannot write") -> RetinaFaceError:
    return RetinaFaceError(f"{what} {path}: {error.strerror or error}")
