"""The detector's side of a job: decoded images → batches of one canvas size → ``detect_arrays`` → outcomes.

:func:`detect_stream` runs in the thread that owns the detector (the ``detect`` command's, or a worker process's
main thread) while an :class:`runtime.jobs.reader.ImageReader` decodes ahead in its own threads.

Batching (:class:`Batcher`): images are grouped by the canvas the network sees (the image's own size with
``resize original``, the input size with ``stretch`` and ``letterbox``: :func:`runtime.preprocess.layout`), so that
a group is one backend call. A group runs when it holds ``batch`` images, or as many as the pixel budget
(:func:`runtime.budget.pixel_budget`) allows: one more would exceed it; when ``hold`` images, or more pixels than
the budget, wait in all groups
(the group of the oldest one runs, so no image waits for ever behind images of other sizes); when no image came
for ``max_wait_s`` after the oldest waiting one arrived (the detector does not sit idle while the reader is
slower); and at the end.

A batch refused with a RetinaFaceError (an image that a fixed-size engine does not take) runs again image by
image, so that each input gets its own outcome; the message names the input.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from retinaface_trt.errors import RetinaFaceError
from runtime.budget import batch_fits, pixel_budget
from runtime.jobs.reader import END, Decoded, ImageReader, TaskList
from runtime.jobs.tasks import JobSettings, Outcome, Task, detected, failed


class Batcher:
    """Decoded images waiting for their batch (see the module doc).

    batch: images per batch; hold: images waiting in all groups at most (≥ batch); key: image shape (H, W, 3) →
    the group's key, a canvas (W, H); clock: seconds (monotonic); budget: pixels (of canvases) in one batch and
    waiting in all groups at most (None: no limit; an image over it runs alone).
    """

    def __init__(self, batch: int, hold: int, key: Callable, clock: Callable[[], float] = time.monotonic,
                 budget: int | None = None):
        self.batch, self.hold, self._key, self._clock = batch, max(batch, hold), key, clock
        self.budget = budget
        self._groups: dict = {}     # key → [Decoded], in the order of each group's oldest image
        self._since: dict = {}      # key → when the group's oldest image arrived
        self.held = 0
        self.held_pixels = 0

    def add(self, item: Decoded) -> list[Decoded] | None:
        """Keep ``item``; return the batch that must run now, or None."""
        key = self._key(item.image.shape)
        group = self._groups.setdefault(key, [])
        if not group:
            self._since[key] = self._clock()
        group.append(item)
        self.held += 1
        pixels = self._pixels(key)
        self.held_pixels += pixels
        if len(group) >= self.batch or (self.budget and not batch_fits(pixels, len(group) + 1, self.budget)):
            return self._pop(key)
        over_budget = self.budget and self.held_pixels > self.budget
        return self.oldest() if self.held >= self.hold or over_budget else None

    def oldest(self) -> list[Decoded]:
        """The group of the oldest waiting image (empty when nothing waits)."""
        return self._pop(next(iter(self._groups))) if self._groups else []

    def wait_s(self, max_wait_s: float) -> float | None:
        """How long to wait for the next image before running :meth:`oldest`; None (as long as it takes) when
        nothing waits."""
        if not self._groups:
            return None
        return max(0.0, self._since[next(iter(self._groups))] + max_wait_s - self._clock())

    def drain(self) -> Iterator[list[Decoded]]:
        """Every waiting group, oldest first."""
        while self._groups:
            yield self.oldest()

    def _pop(self, key) -> list[Decoded]:
        group = self._groups.pop(key)
        del self._since[key]
        self.held -= len(group)
        self.held_pixels -= self._pixels(key) * len(group)
        return group

    def _pixels(self, key) -> int:
        """The pixels of a canvas key (W, H); 0 without a budget (any key then)."""
        return key[0] * key[1] if self.budget else 0


def canvas_key(detector) -> Callable:
    """Image shape (H, W, 3) → the canvas (W, H) that ``detector``'s resize policy gives it."""
    from runtime.preprocess import layout

    resize, input_size = detector.resize, detector.input_size
    return lambda shape: layout((shape[1], shape[0]), resize, input_size).canvas


def detect_stream(detector, source, settings: JobSettings, read=None) -> Iterator[Outcome]:
    """The outcomes of ``source``'s tasks (a reader source, see :mod:`runtime.jobs.reader`), as their batches
    finish: not in task order when images of several sizes interleave. ``detector`` is a
    :class:`runtime.detector.Detector` (or anything with its ``detect_arrays``, ``device``, ``max_pixels``,
    ``resize`` and ``input_size``); ``read`` replaces :func:`runtime.image_io.read_image` (tests)."""
    settings = settings.sized(detector.device)
    batcher = Batcher(settings.batch, settings.hold, canvas_key(detector), budget=pixel_budget(detector.device))
    reader = ImageReader(source, settings.read_threads, settings.prefetch, settings.queued, detector.max_pixels, read)
    with reader, BatchRunner(detector, settings) as run:
        while (item := reader.get(timeout=batcher.wait_s(settings.max_wait_s))) is not END:
            if item is None:                      # nothing new for max_wait_s: run what waits longest
                yield from run(batcher.oldest())
            elif item.image is None:
                yield failed(item.task, item.error)
            elif (batch := batcher.add(item)) is not None:
                yield from run(batch)
        for batch in batcher.drain():
            yield from run(batch)


class BatchRunner:
    """``run(batch) -> [Outcome]``: one ``detect_arrays`` call for a batch of :class:`Decoded` images; the
    records (and annotated copies, drawn and encoded in a thread pool: OpenCV releases the GIL) in batch order."""

    def __init__(self, detector, settings: JobSettings):
        self.detector, self.settings = detector, settings
        self._pool = ThreadPoolExecutor(settings.read_threads, thread_name_prefix="retinaface-draw") \
            if settings.annotate else None

    def __call__(self, batch: list[Decoded]) -> list[Outcome]:
        try:
            found = self.detector.detect_arrays([item.image for item in batch])
        except RetinaFaceError as error:
            if len(batch) == 1:
                return [failed(batch[0].task, str(error))]
            return [outcome for item in batch for outcome in self([item])]    # which of them it was
        finish = lambda pair: detected(pair[0].task, pair[0].image, pair[1], self.settings)  # noqa: E731
        pairs = list(zip(batch, found))
        return list(self._pool.map(finish, pairs)) if self._pool else [finish(pair) for pair in pairs]

    def __enter__(self) -> "BatchRunner":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class InProcess:
    """A detector of this process as a job's runner, with the interface of
    :class:`runtime.jobs.workers.WorkerPool`: ``cfg`` (the network's configuration) and ``run(tasks)`` → outcomes.
    Closing it (``with``) closes the detector."""

    def __init__(self, detector, settings: JobSettings):
        self.detector, self.settings = detector, settings

    @property
    def cfg(self):
        return self.detector.backend.cfg

    def run(self, tasks: list[Task]) -> Iterator[Outcome]:
        return detect_stream(self.detector, TaskList(tasks), self.settings)

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.detector.close()
