"""Reading and decoding images ahead of the detector, in a bounded thread pool.

:class:`ImageReader` runs one feeder thread. It takes tasks from a *source*, submits their reading to a pool of
``read_threads`` threads (:func:`runtime.image_io.read_image`: file reads and OpenCV's decoder release the GIL, so
the threads decode while the detector works), keeps at most ``prefetch`` of them submitted, and hands the results on
in task order through a queue of ``queued`` items. So no more than ``prefetch + queued + 1`` decoded images exist
in the reader at once, however many tasks the source has.

A source has one method, ``take(wait: bool) -> Task | None | END``: the next task; ``None`` when none is ready
(``wait=False``: at once; ``wait=True``: after waiting a moment, so that the feeder can notice it is being closed);
:data:`END` when there are no more. The reader waits for tasks only when it has nothing submitted, so images
already decoded are never held back waiting for new tasks (a worker process gets its tasks only as it answers).
"""

from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, NamedTuple

import numpy as np

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.tasks import Task
from runtime.options import DEFAULT_MAX_PIXELS

END = type("End", (), {"__repr__": lambda self: "END"})()   # no more tasks, no more images
_POLL_S = 0.1             # how often blocked threads look whether the reader is being closed


class Decoded(NamedTuple):
    """A task read: ``image`` BGR uint8 [H, W, 3], or None with ``error`` (one line naming the input)."""

    task: Task
    image: np.ndarray | None
    error: str | None = None


class TaskList:
    """A source over tasks known in advance (see the module doc)."""

    def __init__(self, tasks: Iterable[Task]):
        self._tasks = iter(tasks)

    def take(self, wait: bool):
        return next(self._tasks, END)


class _Failure(NamedTuple):
    error: BaseException      # raised in the feeder thread; re-raised by get() in the caller's


class ImageReader:
    """Reads the source's tasks ahead (see the module doc); a context manager (closing stops the threads).

    ``get(timeout)`` returns the next :class:`Decoded` in task order, None when none came within ``timeout``
    seconds (None: wait as long as it takes), or :data:`END`. ``read(path, max_pixels=...)`` reads one image
    (default :func:`runtime.image_io.read_image`; 0 pixels: no limit).
    """

    def __init__(self, source, read_threads: int = 2, prefetch: int = 4, queued: int = 1,
                 max_pixels: int = DEFAULT_MAX_PIXELS, read=None):
        from runtime.image_io import read_image

        self.source, self.prefetch = source, max(1, prefetch)
        self._read = read or read_image
        self._max_pixels = max_pixels
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queued))
        self._closing = threading.Event()
        self._pool = ThreadPoolExecutor(max(1, read_threads), thread_name_prefix="retinaface-read")
        self._feeder = threading.Thread(target=self._feed, name="retinaface-feeder", daemon=True)

    def __enter__(self) -> "ImageReader":
        self._feeder.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, timeout: float | None = None):
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, _Failure):
            raise item.error
        return item

    def close(self) -> None:
        """Stop reading (what was submitted finishes first) and release the threads. Safe to call twice."""
        self._closing.set()
        if self._feeder.is_alive():
            self._feeder.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # The feeder thread -----------------------------------------------------------------------------------
    def _feed(self) -> None:
        try:
            submitted: collections.deque = collections.deque()
            ended = False
            while not self._closing.is_set():
                ended = ended or self._submit(submitted)
                if submitted:
                    self._put(submitted.popleft().result())
                elif ended:
                    self._put(END)
                    return
        except BaseException as error:   # noqa: BLE001 - a bug or a failing source: the caller's get() raises it
            self._put(_Failure(error))

    def _submit(self, submitted: collections.deque) -> bool:
        """Submit tasks until ``prefetch`` are submitted or none is ready; True once the source has ended."""
        while len(submitted) < self.prefetch:
            task = self.source.take(wait=not submitted)
            if task is END:
                return True
            if task is None:
                return False
            submitted.append(self._pool.submit(self._decode, task))
        return False

    def _decode(self, task: Task) -> Decoded:
        if task.error is not None:
            return Decoded(task, None, task.error)
        try:
            return Decoded(task, self._read(task.path, max_pixels=self._max_pixels))
        except (RetinaFaceError, OSError) as failure:     # one bad input is reported; the others still run
            return Decoded(task, None, str(failure))

    def _put(self, item) -> None:
        """Hand ``item`` on, waiting for room in the queue unless the reader is being closed."""
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
