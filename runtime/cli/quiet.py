"""Keep the command line's stderr to its own lines: what native libraries and warnings print on their own is
dropped, since every problem they see is reported by the command itself on its one line.

* Python warnings that say nothing to a user of the command (Pillow's about EXIF data it could not parse and
  decompression-bomb sizes, NumPy's about overflow and invalid values in float arithmetic) are ignored;
* OpenCV's own log (``[ WARN:0@…]``, ``[ERROR:0@…]``: a refused encode, an unreadable TIFF tag) is silenced;
* lines that libpng prints straight to file descriptor 2 (``libpng warning: iCCP: …``), which no setting turns off,
  are filtered by :func:`filtered_stderr`: fd 2 becomes a pipe read by a thread that passes every other byte
  through, in order, to the original stderr. Only the console program installs it (not ``main(argv)`` called
  from Python, whose caller owns the process's file descriptors).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings

NOISE = re.compile(rb"^(libpng (warning|error): |\[ *(WARN|ERROR|INFO|DEBUG):\d+@)")
_TERMINATORS = re.compile(rb"(?<=[\r\n])")


_quieted = False


def quiet_libraries() -> None:
    """Ignore the Python warnings and silence OpenCV's log, as the module doc says (once per process)."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
    warnings.filterwarnings("ignore", message=r"(Possibly )?[Cc]orrupt EXIF")
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r"(overflow|invalid value|divide by zero|underflow) encountered")
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


@contextlib.contextmanager
def filtered_stderr():
    """File descriptor 2 through the filter of the module doc until the block ends."""
    sys.stderr.flush()
    stream, terminal = sys.stderr, os.isatty(2)
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pump, args=(read_end, original), name="retinaface-stderr", daemon=True)
    pump.start()
    sys.stderr = _Terminal(stream, terminal)     # fd 2 is a pipe now: what it leads to still decides isatty
    try:
        yield
    finally:
        sys.stderr = stream
        stream.flush()
        os.dup2(original, 2)        # the pipe's last writer here: the pump reads its end
        pump.join(timeout=10)
        os.close(original)


class _Terminal:
    """``stream`` (sys.stderr, now writing into the filter's pipe) answering ``isatty()`` for where the pipe
    leads, so that the progress bar still redraws in place on a terminal (runtime.progress)."""

    def __init__(self, stream, terminal: bool):
        self._stream, self._terminal = stream, terminal

    def isatty(self) -> bool:
        return self._terminal

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _pump(read_end: int, out: int) -> None:
    """Copy ``read_end`` to ``out`` line by line (``\\n`` or ``\\r`` ends one), dropping :data:`NOISE` lines; a
    partial line goes on at once unless it may still become a noise line."""
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as source:
        while chunk := source.read(65536):
            pending += chunk
            pieces = _TERMINATORS.split(pending)
            pending = pieces.pop()
            kept = [piece for piece in pieces if not NOISE.match(piece)]
            if pending and not _may_become_noise(pending):
                kept.append(pending)
                pending = b""
            _write_all(out, b"".join(kept))
    if pending and not NOISE.match(pending):
        _write_all(out, pending)


def _may_become_noise(partial: bytes) -> bool:
    return bool(NOISE.match(partial)) or any(prefix.startswith(partial) for prefix in (b"libpng ", b"[ "))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except OSError:
            return
        data = data[written:]
