"""Reading and decoding images ahead of the detector, in a bounded thread pool.

:class:`ImageReader` runs one feeder thread. It takes tasks from a *source*, submits their reading to a pool of
``read_threads`` threads (:func:`runtime.image_io.read_image`: file reads and OpenCV's decoder release the GIL, so
the threads decode while the detector works), keeps at most ``prefetch`` of them submitted, and hands the results on
in task order through a queue of ``queued`` items. So no more than ``prefetch + queued + 1`` decoded images exist
in the reader at once, however many tasks the source has.

With a :class:`runtime.budget.PixelBudget`, the reader also takes each image's pixels from the budget before
submitting its decode (the pixels its header declares, read without decoding; when the header says nothing, the size
of the last image decoded, corrected once this one is decoded) and the consumer gives them back when it is done with the image (:attr:`Decoded.pixels`): the
pixels of all decoded images alive in a job are then bounded, whatever their sizes. While decodes are submitted
the feeder only takes pixels that fit at once (it must keep handing on what is decoded, or the consumer could
wait for an image that waits for pixels that only the consumer gives back).

With ``decode_on`` (a CUDA device), JPEGs are decoded there with nvJPEG (:func:`runtime.image_io.decode_jpegs`):
the threads only read and check the files, and the feeder decodes the JPEGs read so far (up to ``decode_batch``
of them, one nvJPEG call each) on the decoding stream, waiting for it once; the images handed on are then
tensors on that device. Other formats are still decoded by OpenCV in the threads.

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
    """A task read: ``image`` BGR uint8 [H, W, 3] (an ndarray, or a tensor on the device that decoded it), or None
    with ``error`` (one line naming the input); ``pixels``: what the image holds of the reader's pixel budget (to
    give back when done with it). Inside the reader, ``encoded`` holds the bytes of a JPEG that the feeder decodes
    on the device."""

    task: Task
    image: np.ndarray | None
    error: str | None = None
    pixels: int = 0
    encoded: bytes | None = None


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
    (default :func:`runtime.image_io.read_image`; 0 pixels: no limit). ``budget``: a
    :class:`runtime.budget.PixelBudget` (see the module doc), with ``measure(path) -> pixels or None`` (default
    :func:`runtime.image_io.declared_pixels`). ``decode_on``, ``decode_batch``: JPEGs decoded on that CUDA device
    by nvJPEG, that many per call at most (see the module doc); ``read`` is then not used.
    """

    def __init__(self, source, read_threads: int = 2, prefetch: int = 4, queued: int = 1,
                 max_pixels: int = DEFAULT_MAX_PIXELS, read=None, budget=None, measure=None, decode_on=None,
                 decode_batch: int = 32):
        from runtime.image_io import declared_pixels, read_image

        self.source, self.prefetch = source, max(1, prefetch)
        self._read = read or read_image
        self.decode_on, self.decode_batch = decode_on, max(1, decode_batch)
        self.budget, self._measure = budget, measure or declared_pixels
        self._pending = None      # (task, pixels): the next task, waiting for its pixels
        self._typical = 1         # pixels of the last image decoded
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
                    self._hand_on(submitted)      # (in a frame of its own: no image outlives it here)
                elif ended:
                    self._put(END)
                    return
        except BaseException as error:   # noqa: BLE001 - a bug or a failing source: the caller's get() raises it
            self._put(_Failure(error))

    def _submit(self, submitted: collections.deque) -> bool:
        """Submit tasks until ``prefetch`` are submitted or none is ready; True once the source has ended."""
        while len(submitted) < self.prefetch:
            if self._pending is None:
                task = self.source.take(wait=not submitted)
                if task is END:
                    return True
                if task is None:
                    return False
                self._pending = (task, self._declared(task))
            task, pixels = self._pending
            if self.budget is not None and pixels and not (
                    self.budget.try_take(pixels) if submitted else self.budget.take(pixels, timeout=_POLL_S)):
                return False        # no room yet: hand on what is decoded (or look again whether closing)
            self._pending = None
            submitted.append(self._pool.submit(self._decode, task, pixels))
        return False

    def _hand_on(self, submitted: collections.deque) -> None:
        for decoded in self._ready(submitted):
            self._put(decoded)

    def _ready(self, submitted: collections.deque) -> list[Decoded]:
        """The oldest submitted read, waited for, decoded; with ``decode_on``, also the reads after it that are
        already done (up to ``decode_batch``), their JPEGs decoded on the device in one call."""
        group = [submitted.popleft().result()]
        if self.decode_on is None:
            return group
        while len(group) < self.decode_batch and submitted and submitted[0].done():
            group.append(submitted.popleft().result())
        from runtime.image_io import decode_jpegs

        jpegs = [item for item in group if item.encoded is not None]
        images = iter(decode_jpegs([item.encoded for item in jpegs], self.decode_on,
                                   [item.task.path for item in jpegs], self._max_pixels))
        return [item if item.encoded is None else self._settle(item.task, next(images), item.pixels)
                for item in group]

    def _declared(self, task: Task) -> int:
        """The pixels that ``task``'s image will take of the budget, as far as known before decoding it."""
        if self.budget is None or task.error is not None:
            return 0
        try:
            declared = self._measure(task.path)
        except (RetinaFaceError, OSError):       # decoding reports it
            declared = None
        return declared or self._typical          # unknown: as large as the last image decoded

    def _decode(self, task: Task, pixels: int = 0) -> Decoded:
        if task.error is not None:
            return Decoded(task, None, task.error)
        try:
            if self.decode_on is None:
                image = self._read(task.path, max_pixels=self._max_pixels)
            else:
                from runtime.image_io import decode_image, is_jpeg, read_bytes

                data = read_bytes(task.path, self._max_pixels)
                if is_jpeg(data):       # decoded by the feeder, with the JPEGs read beside it
                    return Decoded(task, None, pixels=pixels, encoded=data)
                image = decode_image(data, task.path, self._max_pixels)
        except (RetinaFaceError, OSError) as failure:     # one bad input is reported; the others still run
            self._give(pixels)
            return Decoded(task, None, str(failure))
        return self._settle(task, image, pixels)

    def _settle(self, task: Task, image, pixels: int) -> Decoded:
        """The Decoded of ``image`` (or of the RetinaFaceError in its place), its pixels in the budget corrected
        from ``pixels`` (taken before decoding) to the decoded image's."""
        if isinstance(image, RetinaFaceError):
            self._give(pixels)
            return Decoded(task, None, str(image))
        if self.budget is None:
            return Decoded(task, image)
        actual = self._typical = image.shape[0] * image.shape[1]
        if actual > pixels:        # its header did not say (or said less): taken now, whether it fits or not
            self.budget.force(actual - pixels)
        elif actual < pixels:
            self.budget.give(pixels - actual)
        return Decoded(task, image, pixels=actual)

    def _give(self, pixels: int) -> None:
        if self.budget is not None and pixels:
            self.budget.give(pixels)

    def _put(self, item) -> None:
        """Hand ``item`` on, waiting for room in the queue unless the reader is being closed."""
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
