"""The detector's side of a job: decoded images → batches of one canvas size → ``detect_arrays`` → outcomes.

:func:`detect_stream` runs in the thread that owns the detector (the ``detect`` command's, or a worker process's
main thread) while an :class:`runtime.jobs.reader.ImageReader` decodes ahead in its own threads.

Batching (:class:`Batcher`): images are grouped by the canvas the network sees (the image's own size with
``resize original``, the input size with ``stretch`` and ``letterbox``: :func:`runtime.preprocess.layout`), so that
a group is one backend call. A group runs when it holds ``batch`` images, or as many as the pixel budget
(:func:`runtime.budget.pixel_budget`) allows: one more would exceed it; when ``hold`` images, or more pixels than
the budget, wait in all groups
(the group of the oldest one runs, so no image waits for ever behind images of other sizes); when no image came
for ``max_wait_s`` (the reader stalls: a slow disk, a slow source) and the detector has no batch; and at the end.
A steady stream of images thus runs in full batches, however much faster the detector is than the reader:
partial batches cost throughput on a GPU (each batch size is a shape of its own, see
:func:`runtime.device.batch_bucket`, run by untuned kernels until cuDNN plans it, seconds in float16), while
waiting for a full batch costs only the latency of the first images, the reader going on meanwhile.

A batch refused with a RetinaFaceError (an image that a fixed-size engine does not take) runs again image by
image, so that each input gets its own outcome; the message names the input.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

from retinaface_trt.errors import RetinaFaceError
from runtime.budget import PixelBudget, batch_fits, pixel_budget
from runtime.jobs.reader import END, Decoded, ImageReader, TaskList
from runtime.jobs.tasks import DECODE_BATCH, JobSettings, Outcome, Task, detected, failed

_COLLECT_S = 0.002        # while batches are being detected, look this often whether one finished


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
        self._last = 0.0            # when the latest image arrived
        self.held = 0
        self.held_pixels = 0

    def add(self, item: Decoded) -> list[Decoded] | None:
        """Keep ``item``; return the batch that must run now, or None."""
        key = self._key(item.image.shape)
        group = self._groups.setdefault(key, [])
        group.append(item)
        self._last = self._clock()
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
        """How long to wait for the next image before running :meth:`oldest`: until ``max_wait_s`` after the
        latest image arrived; None (as long as it takes) when nothing waits."""
        if not self._groups:
            return None
        return max(0.0, self._last + max_wait_s - self._clock())

    def drain(self) -> Iterator[list[Decoded]]:
        """Every waiting group, oldest first."""
        while self._groups:
            yield self.oldest()

    def _pop(self, key) -> list[Decoded]:
        group = self._groups.pop(key)
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


def decoding(settings: JobSettings, device) -> dict:
    """The reader's decoding options for ``settings`` (sized): JPEGs decoded on ``device`` with nvJPEG, or none."""
    if settings.decoder != "nvjpeg":
        return {}
    return {"decode_on": device, "decode_batch": DECODE_BATCH}


def detect_stream(detector, source, settings: JobSettings, read=None) -> Iterator[Outcome]:
    """The outcomes of ``source``'s tasks (a reader source, see :mod:`runtime.jobs.reader`), as their batches
    finish: not in task order when images of several sizes interleave. ``detector`` is a
    :class:`runtime.detector.Detector` (or anything with its ``detect_arrays``, ``device``, ``max_pixels``,
    ``resize`` and ``input_size``); ``read`` replaces :func:`runtime.image_io.read_image` (tests).

    Up to ``settings.in_flight`` batches are with the detector at once (its own threads: while one batch runs on
    the device, the next one is staged and uploaded, see :meth:`runtime.detector.Detector.detect_arrays`), and
    the records of a finished batch are made here meanwhile. Decoded images hold pixels of one
    :class:`runtime.budget.PixelBudget` from before their decode until their
    outcomes are made (``settings.pixel_budget``, or this machine's :func:`runtime.budget.pixel_budget`), which
    also bounds the pixels of one batch."""
    settings = settings.sized(detector)
    limit = settings.pixel_budget or pixel_budget(detector.device, settings.host_share)
    budget = PixelBudget(limit)
    batcher = Batcher(settings.batch, settings.hold, canvas_key(detector), budget=limit)
    reader = ImageReader(source, settings.read_threads, settings.prefetch, settings.queued, detector.max_pixels, read,
                         budget=budget, **decoding(settings, detector.device))
    with reader, BatchRunner(detector, settings, budget) as run:
        while (item := reader.get(timeout=run.wait_s(batcher.wait_s(settings.max_wait_s)))) is not END:
            if item is None:                      # nothing new for a while: collect; run what waits longest if
                yield from run.collect(block=False)   # the detector is idle (a partial batch only then)
                if run.idle and batcher.wait_s(settings.max_wait_s) == 0:
                    yield from run(batcher.oldest())
            elif item.image is None:
                yield failed(item.task, item.error)
            else:
                yield from run(batcher.add(item))
            item = None                           # no image outlives its pixels given back (nor a batch: no names)
            yield from run.collect(block=False)
        while batcher.held:
            yield from run(batcher.oldest())
        yield from run.collect(block=True)


class BatchRunner:
    """``run(batch) -> [Outcome]``: one ``detect_arrays`` call for a batch of :class:`Decoded` images, in a
    thread of its own (``run.now(batch)``: and wait for it); up to ``settings.in_flight`` batches at once (a further one waits for the oldest).
    ``collect`` gives the outcomes of the batches done (``block``: of all of them), each batch's in batch order;
    the records (and annotated copies, drawn and encoded in a thread pool: OpenCV releases the GIL) are made in
    the calling thread, which then gives the batch's pixels back to ``budget``."""

    def __init__(self, detector, settings: JobSettings, budget=None):
        self.detector, self.settings, self.budget = detector, settings, budget
        self._pool = ThreadPoolExecutor(settings.read_threads, thread_name_prefix="retinaface-draw") \
            if settings.annotate else None
        self._detecting = ThreadPoolExecutor(settings.in_flight, thread_name_prefix="retinaface-detect")
        self._running: collections.deque = collections.deque()     # (batch, future of its detections)

    def __call__(self, batch: list[Decoded] | None) -> list[Outcome]:
        """Start ``batch`` (nothing for None or an empty one); the outcomes of batches that had to finish first
        to make room."""
        if not batch:
            return []
        done = []
        while len(self._running) >= self.settings.in_flight:
            done.extend(self._finish(*self._running.popleft()))
        self._running.append((batch, self._detecting.submit(self._detect, batch)))
        return done

    def now(self, batch: list[Decoded]) -> list[Outcome]:
        """Run ``batch`` and wait for it: its outcomes (and those of any batch started before it)."""
        return self(batch) + self.collect(block=True)

    def collect(self, block: bool) -> list[Outcome]:
        done = []
        while self._running and (block or self._running[0][1].done()):
            done.extend(self._finish(*self._running.popleft()))
        return done

    @property
    def idle(self) -> bool:
        """No batch is with the detector."""
        return not self._running

    def wait_s(self, wait_s: float | None) -> float | None:
        """How long the stream may wait for the next image: ``wait_s`` (the batcher's) while the detector is
        idle; while a batch is being detected, a moment (its outcomes are collected between waits, and no partial
        batch runs before it is done)."""
        return wait_s if not self._running else _COLLECT_S

    def _detect(self, batch: list[Decoded]) -> list:
        """The detections of each image of ``batch``, or the message of a refused image."""
        try:
            return self.detector.detect_arrays([item.image for item in batch])
        except RetinaFaceError as error:
            if len(batch) == 1:
                return [str(error)]
            return [found for item in batch for found in self._detect([item])]    # which of them it was

    def _finish(self, batch: list[Decoded], future) -> list[Outcome]:
        try:
            found = future.result()
        finally:
            if self.budget is not None:
                self.budget.give(sum(item.pixels for item in batch))
        finish = lambda pair: (failed(pair[0].task, pair[1]) if isinstance(pair[1], str)  # noqa: E731
                               else detected(pair[0].task, pair[0].image, pair[1], self.settings))
        pairs = list(zip(batch, found))
        return list(self._pool.map(finish, pairs)) if self._pool else [finish(pair) for pair in pairs]

    def __enter__(self) -> "BatchRunner":
        return self

    def __exit__(self, *exc) -> None:
        self._detecting.shutdown(wait=True, cancel_futures=True)
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
