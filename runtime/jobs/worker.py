"""The worker process of :mod:`runtime.jobs.workers`: one device, its own detector, the tasks its parent gives.

:func:`worker_main` is the process's target. It makes the device its own (``torch.cuda.set_device`` for a GPU:
nothing of the worker lands on another device; for a CPU share, as many torch threads as CPUs in the share, to
which the process is pinned before torch starts), builds the detector with the factory, says ``("ready",
WorkerInfo)``, runs :func:`runtime.jobs.pipeline.detect_stream` over the parcels of tasks on its queue
(:class:`QueueSource`) sending ``("outcome", Outcome)`` for each, and says ``("done",)`` once the parent sends
None; or ``("failed", message)`` (:func:`one_line`) on any error. It ignores SIGINT (Ctrl-C reaches the whole
process group: the parent stops the workers) and stops when its parent is gone.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import sys
from dataclasses import dataclass

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.reader import END
from runtime.jobs.tasks import JobSettings

log = logging.getLogger("retinaface_trt")
POLL_S = 0.2               # how often a worker waiting for tasks looks whether its parent is still there


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker runs: its device (``cuda:1``), backend name and network configuration."""

    device: str
    backend: str
    cfg: object


class QueueSource:
    """A reader source (:mod:`runtime.jobs.reader`) over the parcels the parent puts on ``tasks``."""

    def __init__(self, tasks):
        self._tasks, self._pending, self._parent = tasks, collections.deque(), os.getppid()

    def take(self, wait: bool):
        while not self._pending:
            try:
                parcel = self._tasks.get(timeout=POLL_S) if wait else self._tasks.get_nowait()
            except queue.Empty:
                return END if os.getppid() != self._parent else None    # an orphan stops
            if parcel is None:
                return END
            self._pending.extend(parcel)
        return self._pending.popleft()


def worker_main(device: str, factory, settings: JobSettings, tasks, results, cpus, log_level: int) -> None:
    """The worker process: build the detector on ``device``, answer every task, then say "done" (see the
    module doc); every failure goes back to the parent as one line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cpus:
        os.sched_setaffinity(0, cpus)            # before torch starts its threads
    logging.basicConfig(level=log_level, stream=sys.stderr, format=f"%(levelname)s %(name)s [{device}]: %(message)s")
    try:
        _work(device, factory, settings, tasks, results, cpus)
    except BaseException as error:   # noqa: BLE001 - the parent reports it, on one line
        log.debug("worker on %s failed", device, exc_info=True)
        _send(results, ("failed", one_line(error)))
    finally:
        results.close()


def _work(device: str, factory, settings: JobSettings, tasks, results, cpus) -> None:
    from runtime.jobs.pipeline import detect_stream

    _claim(device, cpus)
    with factory(device) as detector:
        backend = detector.backend
        results.send(("ready", WorkerInfo(device, backend.name, backend.cfg)))
        for outcome in detect_stream(detector, QueueSource(tasks), settings):
            results.send(("outcome", outcome))
    results.send(("done",))


def _claim(device: str, cpus) -> None:
    """Make ``device`` the worker's: the current CUDA device of the process, or the CPU share's thread count."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    elif cpus:
        torch.set_num_threads(len(cpus))


def _send(results, message) -> None:
    try:
        results.send(message)
    except (OSError, ValueError):    # the parent is gone: nobody to tell
        pass


def one_line(error: BaseException) -> str:
    """A RetinaFaceError's message as it is; anything else as ``Type: first line of its message``."""
    if isinstance(error, RetinaFaceError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
