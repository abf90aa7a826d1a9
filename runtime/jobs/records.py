"""Where a job's records go: the resumable record store (``--json-lines``) and the JSON array (``--json``).

``--json-lines OUT.jsonl`` (:class:`RecordStore`): one record per line (the ``--json`` record on one line),
appended as soon as the record of an input is final, in input order. Each line is written whole and handed to
the operating system at once (a killed run loses nothing it wrote); the file is fsync'd with the first record
appended :data:`SYNC_INTERVAL_S` seconds or more after the last sync, and at the end (a power loss costs about
that much work, done again by the next run). At start an existing file is read back: the inputs whose record is there (its ``"image"`` equals the input
path as given) are skipped, so running the same command again resumes a job; records of failed inputs count as
done too (to try those again, delete their lines). A last line without its newline (a run killed while writing
it) is dropped before the first new line is appended; any other line that is not a record is an error. While a
run appends to a file, it holds a lock on it: a second run on the same file is refused. The settings the records
depend on (model, thresholds, resize, input size; given by the caller) are kept beside the file in
``OUT.jsonl.settings.json``, written with the first record: a run resuming with other settings is refused (its
records would mix two settings in one file), naming what differs. ``-`` streams the records to standard output
instead (nothing to resume from).

``--json OUT.json`` (:func:`json_array`): the JSON array of the records of every input, in input order, the
skipped inputs' records (read back from the store) included; the same text as ``to_json(records, indent=2)``,
streamed into a part file renamed over ``OUT.json`` at the end (:func:`retinaface_trt.fileio.atomic_write`), so
memory does not grow with the number of images and a run that fails leaves no file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import NamedTuple

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.fileio import atomic_write, check_writable, is_stream, make_dirs, write_text_atomic
from runtime.face import to_json

SYNC_INTERVAL_S = 1.0
SETTINGS_SUFFIX = ".settings.json"   # beside OUT.jsonl: the settings its records were made with
log = logging.getLogger("retinaface_trt")


class Entry(NamedTuple):
    """Where a stored record is (byte offset and length of its line) and what it says."""

    offset: int
    length: int
    faces: int
    failed: bool


class RecordStore:
    """The records of one ``--json-lines`` file (see the module doc); a context manager.

    ``path in store``: that input has a record; ``store.entry(path)``: its :class:`Entry`; ``store.record(path)``
    reads it back; ``store.append(record)`` adds one (creating the file on the first one); ``close()`` syncs the
    file and releases the lock.
    """

    def __init__(self, path: str | os.PathLike, sync_interval_s: float = SYNC_INTERVAL_S, settings: dict | None = None):
        self.path, self.sync_interval_s = os.fspath(path), sync_interval_s
        self.settings = settings
        self.stream = is_stream(self.path)
        self._entries: dict[str, Entry] = {}
        self._end = 0                 # bytes of complete lines: a torn last line starts there
        self._reader = None           # open for the run: reads records back, holds the lock
        self._writer = None
        self._synced = time.monotonic()

    @classmethod
    def open(cls, path: str | os.PathLike, settings: dict | None = None,
             sync_interval_s: float = SYNC_INTERVAL_S) -> "RecordStore":
        """The store of ``path``, read back; RetinaFaceError (nothing written) if it cannot be read, appended to
        or created, holds a line that is not a record, is being written by another run, or was written with
        other ``settings`` (a JSON-able dict; None: not checked)."""
        store = cls(path, sync_interval_s, settings)
        if not store.stream:
            store._load()
            store._check_settings()
        return store

    @property
    def settings_path(self) -> str:
        return self.path + SETTINGS_SUFFIX

    def _check_settings(self) -> None:
        if self.settings is None or not os.path.exists(self.settings_path):
            return
        try:
            with open(self.settings_path, encoding="utf-8") as handle:
                stored = json.load(handle)
        except (OSError, ValueError) as error:
            self.close()
            raise RetinaFaceError(f"cannot read {self.settings_path} ({error}); remove it to resume {self.path} "
                                  "without checking its settings") from None
        differ = [f"{key} {stored.get(key)!r} there, {value!r} now" for key, value in self.settings.items()
                  if _comparable(stored.get(key)) != _comparable(value)]
        if differ:
            self.close()
            raise RetinaFaceError(f"{self.path} holds records made with other settings ({'; '.join(differ)}); "
                                  "resume with the same settings, or pass another --json-lines file")

    def __contains__(self, image: str) -> bool:
        return image in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, image: str) -> Entry:
        return self._entries[image]

    def record(self, image: str) -> dict:
        """The stored record of ``image`` (the last one, if it was recorded twice)."""
        entry = self._entries[image]
        self._reader.seek(entry.offset)
        return json.loads(self._reader.read(entry.length))

    def append(self, record: dict) -> None:
        """Write ``record`` as one line, at once; fsync when the last sync is ``sync_interval_s`` old."""
        line = to_json(record) + "\n"
        try:
            writer = self._writer or self._open_writer()
            writer.write(line if writer is sys.stdout else line.encode())
            writer.flush()
            if writer is not sys.stdout and time.monotonic() - self._synced >= self.sync_interval_s:
                self._sync()
        except OSError as error:
            raise RetinaFaceError(f"cannot write {self.path}: {error.strerror or error}") from None

    def close(self) -> None:
        """Sync what was appended to disk and release the file (and its lock). Safe to call twice."""
        writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
        try:
            if writer is not None and writer is not sys.stdout:
                with writer:
                    writer.flush()
                    if not self.stream:
                        os.fsync(writer.fileno())
        except OSError as error:
            raise RetinaFaceError(f"cannot write {self.path}: {error.strerror or error}") from None
        finally:
            if reader is not None:
                reader.close()

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Opening ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        if os.path.isdir(self.path):
            raise RetinaFaceError(f"--json-lines {self.path} is a folder; expected a file name such as "
                                  f"{os.path.join(self.path, 'records.jsonl')}")
        if not os.path.exists(self.path):
            check_writable(self.path, force=True)      # its folder takes files; file and folders made on first append
            return
        try:
            self._reader = open(self.path, "rb")
            _lock(self._reader, self.path)
            self._entries, self._end = read_records(self._reader, self.path)
            open(self.path, "ab").close()              # appending will work (nothing is written)
        except OSError as error:
            self.close()
            raise RetinaFaceError(f"cannot use {self.path}: {error.strerror or error}") from None
        except BaseException:
            self.close()
            raise

    def _open_writer(self):
        if self.path == "-":
            self._writer = sys.stdout
            return self._writer
        if not self.stream:
            make_dirs(os.path.dirname(self.path) or ".")   # as every output file's (retinaface_trt.fileio)
        writer = open(self.path, "ab")
        if not self.stream:
            if self._reader is None:
                _lock(writer, self.path)               # a new file: locked from its first line on
                if os.fstat(writer.fileno()).st_size:  # written since it was found missing: never truncated
                    writer.close()
                    raise RetinaFaceError(f"{self.path} was created by another run while this one ran; pass "
                                          "another --json-lines file")
            if self.settings is not None:
                write_text_atomic(self.settings_path, to_json(self.settings, indent=2) + "\n")
            if os.fstat(writer.fileno()).st_size > self._end:
                log.warning("%s: its last line was incomplete (a run stopped while writing it); replaced", self.path)
                os.ftruncate(writer.fileno(), self._end)
        self._writer = writer
        return writer

    def _sync(self) -> None:
        os.fsync(self._writer.fileno())
        self._synced = time.monotonic()


def read_records(handle, path: str) -> tuple[dict[str, Entry], int]:
    """The records of the binary ``handle`` (image → :class:`Entry`, the last record of an image winning) and the
    number of bytes of complete lines (a last line without newline is left out: a run stopped while writing it)."""
    entries, end = {}, 0
    for number, line in enumerate(handle, 1):
        if not line.endswith(b"\n"):
            break
        if line.strip():
            record = _parse(line, path, number)
            entries[record["image"]] = Entry(end, len(line), len(record["faces"]), "error" in record)
        end += len(line)
    return entries, end


def _parse(line: bytes, path: str, number: int) -> dict:
    try:
        record = json.loads(line)
        why = None if isinstance(record, dict) else f"a JSON {type(record).__name__}, not an object"
    except ValueError as error:
        record, why = None, f"not JSON: {error}"
    if why is None and not (isinstance(record.get("image"), str) and isinstance(record.get("faces"), list)):
        why = 'no "image" path and "faces" list'
    if why:
        raise RetinaFaceError(f"{path} line {number} is not a record of `detect --json-lines` ({why}); pass "
                              "another file, or remove that line")
    return record


def _comparable(value):
    """JSON's view of a value (tuples are lists), so that a stored setting equals the one given."""
    return json.loads(json.dumps(value))


def _lock(handle, path: str) -> None:
    """Hold an exclusive lock on ``path`` through ``handle`` (released when it is closed)."""
    try:
        import fcntl
    except ImportError:           # not POSIX: no lock, as retinaface_trt.fileio
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RetinaFaceError(f"{path} is being written by another detect run; wait for it to finish, or pass "
                              "another --json-lines file") from None


@contextlib.contextmanager
def json_array(path: str | os.PathLike, force: bool = False):
    """``write(record)`` for each record, in order: the file becomes ``to_json(records, indent=2) + "\\n"``
    (see the module doc); ``-`` is standard output."""
    with atomic_write(path, "w", force=force) as handle:
        count = 0

        def write(record: dict) -> None:
            nonlocal count
            text = to_json(record, indent=2).replace("\n", "\n  ")
            handle.write(("[\n  " if count == 0 else ",\n  ") + text)
            count += 1

        yield write
        handle.write("\n]\n" if count else "[]\n")
