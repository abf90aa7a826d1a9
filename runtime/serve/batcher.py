"""Micro-batching: one worker thread owns the detector and runs requests in ``detect_arrays`` calls.

Callers (any thread) :meth:`MicroBatcher.submit` a decoded BGR image and get a
:class:`concurrent.futures.Future` of its detections ([K, 15] rows). The worker takes the oldest waiting image, then gathers
more for up to ``max_delay_s`` or until it holds ``max_batch`` of them, and runs them as one
``detector.detect_arrays`` call: the detector (and the GPU under it) is only ever used from that thread.

The queue itself is unbounded; what bounds it is the admission limit of the caller (the HTTP app admits
at most ``max_queue`` requests at once, see :mod:`runtime.serve.app`), checked before a body is read.
A failing batch is re-run one image at a time, so one bad image fails only its own request.
:meth:`MicroBatcher.stop` lets the worker finish everything already submitted, then ends it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from retinaface_trt.errors import RetinaFaceError

log = logging.getLogger("retinaface_trt")

_STOP = object()   # queued by stop(): everything before it is still processed


class ShuttingDown(RetinaFaceError):
    """An image submitted after :meth:`MicroBatcher.stop`."""


@dataclass(frozen=True)
class _Job:
    image: np.ndarray   # BGR uint8 [H, W, 3]
    future: Future      # resolves to list[Face]


class MicroBatcher:
    """Gathers submitted images into ``detector.detect_arrays`` calls on one worker thread.

    detector:    anything with ``detect_arrays(list of BGR uint8 [H, W, 3]) -> list[float32 [K, 15]]``
    max_batch:   images per call (≥ 1)
    max_delay_s: how long to wait for more images after the first one of a batch, in seconds (≥ 0)
    metrics:     a :class:`runtime.serve.metrics.ServeMetrics`, or None
    warmup:      an image whose size the detector prepares for every batch up to ``max_batch``
                 (:meth:`runtime.detector.Detector.prepare`: cuDNN's plans and CUDA graphs, seconds per batch
                 shape in float16 on a GPU) and then runs once, before the first request, so that no request
                 pays for them; or None. :attr:`ready` is set once it ran
    """

    def __init__(self, detector, max_batch: int = 16, max_delay_s: float = 0.002, metrics=None,
                 warmup: np.ndarray | None = None):
        self.detector = detector
        self.max_batch = int(max_batch)
        self.max_delay_s = float(max_delay_s)
        self.metrics = metrics
        self.ready = threading.Event()
        self.warmup_error: str | None = None
        self._warmup = warmup
        self._queue: queue.Queue = queue.Queue()
        self._stopping = False
        self._lock = threading.Lock()   # no job can be queued behind the stop marker
        self._thread = threading.Thread(target=self._loop, name="retinaface-batcher", daemon=True)

    def start(self) -> "MicroBatcher":
        self._thread.start()
        return self

    def submit(self, image: np.ndarray) -> Future:
        """Queue one BGR image; the future gives its ``list[Face]`` or the error of its batch."""
        future: Future = Future()
        with self._lock:
            if self._stopping:
                raise ShuttingDown("the server is shutting down; send the request to another instance")
            self._queue.put(_Job(image, future))
        self._set_depth()
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Finish every submitted image, then end the worker (waits up to ``timeout`` seconds)."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        try:
            self._warm_up()
            while True:
                jobs = self._collect()
                if not jobs:
                    return
                self._run(jobs)
        finally:
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        """Answer whatever is still queued when the worker ends (only a crash leaves anything behind)."""
        with self._lock:
            self._stopping = True
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if job is not _STOP and job.future.set_running_or_notify_cancel():
                    job.future.set_exception(ShuttingDown("the batch worker stopped; retry on another instance"))

    def _warm_up(self) -> None:
        if self._warmup is not None:
            try:
                height, width = self._warmup.shape[:2]
                self.detector.prepare((width, height), range(1, self.max_batch + 1))
                self.detector.detect_arrays([self._warmup])
            except Exception as error:   # noqa: BLE001 - reported by /readyz; requests still get answers
                self.warmup_error = f"warm-up failed: {error}"
                log.exception("serve: the warm-up batch failed")
                return
        self.ready.set()

    def _collect(self) -> list[_Job]:
        """The next batch: the oldest job, then whatever arrives within max_delay_s (≤ max_batch)."""
        first = self._queue.get()
        if first is _STOP:
            return []
        jobs, deadline = [first], time.monotonic() + self.max_delay_s
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)   # run this batch, stop at the next collect
                break
            jobs.append(job)
        self._set_depth()
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        try:
            if jobs:
                self._run_batch(jobs)
        finally:   # even a crash of the worker answers its batch: no request waits forever
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(ShuttingDown("the batch worker stopped; retry on another instance"))

    def _run_batch(self, jobs: list[_Job]) -> None:
        start = time.perf_counter()
        try:
            results = self.detector.detect_arrays([job.image for job in jobs])
        except Exception as error:   # noqa: BLE001 - handed to the requests, never kills the worker
            if len(jobs) == 1:
                jobs[0].future.set_exception(error)
            else:
                self._run_one_by_one(jobs)
            return
        self._observe(len(jobs), time.perf_counter() - start)
        for job, faces in zip(jobs, results):
            job.future.set_result(faces)

    def _run_one_by_one(self, jobs: list[_Job]) -> None:
        """After a failed batch: each image alone, so only the bad ones fail."""
        for job in jobs:
            start = time.perf_counter()
            try:
                job.future.set_result(self.detector.detect_arrays([job.image])[0])
            except Exception as error:   # noqa: BLE001
                job.future.set_exception(error)
            self._observe(1, time.perf_counter() - start)

    def _observe(self, size: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.batch(size, seconds)

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._queue.qsize())
