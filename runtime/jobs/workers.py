"""One worker process per device, fed by the parent; the outcomes come back as they finish.

Lifecycle, in the parent: ``with WorkerPool(devices, factory, settings) as pool`` starts the first worker and waits
until its detector is built, then starts the others (an engine that the backend builds into the engine cache, or
an ONNX export, is then made once, by the first worker, and found there by the others); ``pool.info`` describes
the model; ``pool.run(tasks)`` yields every task's :class:`runtime.jobs.tasks.Outcome`; leaving the block stops the
workers (at once, by SIGTERM, when it is left by an exception).

Each worker runs :func:`runtime.jobs.pipeline.detect_stream` over the tasks it is given: it reads and decodes its
images itself, in its own threads (decoded pixels never cross a process boundary: a pipe carries about 230
1024×624 images a second on the development machine, far less than a GPU detects), and sends back records.

Protocol. Parent → worker: lists of consecutive tasks on the worker's queue, None when there are no more.
Worker → parent, on its pipe: ``("ready", WorkerInfo)``, then ``("outcome", Outcome)`` per task, then
``("done",)``; or ``("failed", message)``. Flow control: a worker holds at most ``credit`` tasks not answered yet;
each parcel of ``batch`` tasks goes to the ready worker holding the fewest, so a faster device gets more work.

Failures end the job, never hang it: an exception in a worker comes back as its one-line message (a
RetinaFaceError such as missing weights, as the same command on one device gives it); a worker that ends without
saying so (killed, or crashed in native code) raises :class:`WorkerLost`, naming its device and how it ended.

Workers are started with ``spawn`` (a forked child cannot use CUDA); what runs in them is :mod:`runtime.jobs.worker`.
CPU workers get disjoint shares of the CPUs (:func:`runtime.jobs.devices.cpu_shares`). Starting a pool from a
script needs the ``if __name__ == "__main__":`` guard that ``spawn`` always needs.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from retinaface_trt.errors import RetinaFaceError
from runtime.jobs.devices import cpu_shares
from runtime.jobs.tasks import JobSettings, Outcome, Task
from runtime.jobs.worker import WorkerInfo, worker_main

log = logging.getLogger("retinaface_trt")
STOP_TIMEOUT_S = 60.0      # how long stopping waits for the workers to close their detectors


class WorkerLost(RetinaFaceError):
    """A worker process ended without finishing its tasks (killed, or crashed outside Python)."""


@dataclass(frozen=True)
class DetectorFactory:
    """``factory(device)`` → ``Detector.from_options(**options, device=device)``: each worker builds its own
    detector from the same options (``DetectorSettings.options()`` of :mod:`runtime.cli.options`)."""

    options: dict

    def __call__(self, device: str):
        from runtime.detector import Detector

        return Detector.from_options(**{**self.options, "device": device})


class WorkerPool:
    """Worker processes on ``devices`` (canonical names, :func:`runtime.jobs.devices.resolve_devices`), each with
    the detector ``factory(device)`` gives (a picklable callable; its result is a context manager with
    ``detect_arrays``, ``device``, ``max_pixels``, ``resize``, ``input_size`` and ``backend``), working as
    ``settings`` say. See the module doc."""

    def __init__(self, devices: list[str], factory, settings: JobSettings, credit: int | None = None,
                 log_level: int | None = None):
        if not devices:
            raise RetinaFaceError("no device to run on; pass --devices cuda:0,… or cpu")
        # the workers share this host's memory: each one's pixel budget is its share of it (runtime.budget)
        settings = dataclasses.replace(settings, host_share=len(devices))
        self.devices, self.factory, self.settings = list(devices), factory, settings
        self.parcel = settings.batch or 8
        self.credit = max(credit or 0, 2 * self.parcel + settings.prefetch + settings.hold)
        self.log_level = logging.getLogger().getEffectiveLevel() if log_level is None else log_level
        self.info: WorkerInfo | None = None
        self._workers: list[_Worker] = []

    def __enter__(self) -> "WorkerPool":
        try:
            self._start()
        except BaseException:
            self._stop(clean=False)
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._stop(clean=exc_type is None)

    @property
    def answered(self) -> list[int]:
        """Tasks answered by each worker so far, in the order of ``devices``."""
        return [worker.answered for worker in self._workers]

    @property
    def cfg(self):
        """The network configuration of the model the workers run (:class:`network.config.RetinaFaceConfig`)."""
        return self.info.cfg

    def run(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """Every task's outcome, in the order they finish."""
        parcels = _parcels(tasks, self.parcel)
        parcel = next(parcels, None)
        while True:
            parcel = self._give(parcel, parcels)
            if parcel is None and not any(worker.given for worker in self._workers):
                return
            for worker, message in self._poll():
                outcome = self._handle(worker, message)
                if outcome is not None:
                    yield outcome

    # Starting and stopping --------------------------------------------------------------------------------
    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        shares = cpu_shares(self.devices, _usable_cpus())
        self._workers = [_Worker(context, device, share, self) for device, share in zip(self.devices, shares)]
        first = self._workers[0]
        first.start()
        while not first.ready:
            for worker, message in self._poll():
                self._handle(worker, message)
        for worker in self._workers[1:]:
            worker.start()

    def _stop(self, clean: bool) -> None:
        if clean:
            self._finish([worker for worker in self._workers if worker.process.pid is not None])
        for worker in self._workers:
            worker.end()

    def _finish(self, started: list["_Worker"]) -> None:
        """Tell every worker that no more tasks come and wait for them to close their detectors."""
        for worker in started:
            worker.tasks.put(None)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        try:
            while any(not worker.ended for worker in started):
                if time.monotonic() >= deadline:
                    log.warning("workers did not stop within %.0f s; terminating them", STOP_TIMEOUT_S)
                    return
                for worker, message in self._poll(timeout=deadline - time.monotonic()):
                    if message[0] == "failed":   # every record is written: a failure to close is only reported
                        log.warning("worker on %s: %s", worker.device, message[1])
                    else:
                        self._handle(worker, message)
        except WorkerLost as lost:
            log.warning("%s", lost)

    # Talking to the workers ---------------------------------------------------------------------------------
    def _give(self, parcel, parcels):
        """Give parcels to ready workers with room, the one holding the fewest tasks first; return the parcel
        that could not be given yet (None when all were)."""
        while parcel is not None:
            room = [w for w in self._workers if w.ready and not w.ended and w.given + len(parcel) <= self.credit]
            if not room:
                break
            worker = min(room, key=lambda w: w.given)
            worker.tasks.put(parcel)
            worker.given += len(parcel)
            parcel = next(parcels, None)
        return parcel

    def _poll(self, timeout: float | None = None) -> Iterator[tuple["_Worker", tuple]]:
        """The messages of the workers that sent any, as (worker, message), waiting up to ``timeout`` seconds
        (None: until one comes); WorkerLost once a worker that has not said "done" is gone."""
        handles = {}
        for worker in self._workers:
            if worker.process.pid is not None and not worker.ended:
                handles[worker.conn] = handles[worker.process.sentinel] = worker
        for worker in dict.fromkeys(handles[h] for h in multiprocessing.connection.wait(list(handles), timeout)):
            gone = False
            for message in worker.receive():
                if message is None:
                    gone = True
                else:
                    yield worker, message
            if gone or not worker.process.is_alive():
                worker.ended = True
                worker.process.join(timeout=5)
                if not worker.done:
                    raise WorkerLost(f"the worker on {worker.device} ended unexpectedly ({_how(worker.process)}) "
                                     f"with {worker.given} image(s) not answered")

    def _handle(self, worker: "_Worker", message: tuple) -> Outcome | None:
        kind = message[0]
        if kind == "outcome":
            worker.given -= 1
            worker.answered += 1
            return message[1]
        if kind == "ready":
            worker.ready, self.info = True, self.info or message[1]
            log.info("worker on %s ready: %s backend, %s", worker.device, message[1].backend,
                     getattr(message[1].cfg, "name", "?"))
        elif kind == "done":
            worker.done = True
            log.info("worker on %s done: %d image(s)", worker.device, worker.answered)
        elif kind == "failed":
            raise RetinaFaceError(f"{message[1]} (worker on {worker.device})")
        return None


class _Worker:
    """The parent's side of one worker process: its queue, its pipe and what it holds."""

    def __init__(self, context, device: str, cpus, pool: WorkerPool):
        self.device = device
        self.tasks = context.Queue()
        self.conn, child = context.Pipe(duplex=False)
        self._child = child
        self.process = context.Process(target=worker_main, name=f"retinaface-{device}", daemon=True,
                                       args=(device, pool.factory, pool.settings, self.tasks, child, cpus,
                                             pool.log_level))
        self.ready = self.done = self.ended = False
        self.given = 0          # tasks given and not answered
        self.answered = 0

    def start(self) -> None:
        self.process.start()
        self._child.close()     # the worker holds the only writing end: its exit makes the pipe say EOF

    def receive(self) -> Iterator[tuple | None]:
        """What the worker sent and is not read yet; None once its end of the pipe is closed."""
        while self.conn.poll():
            try:
                yield self.conn.recv()
            except (EOFError, OSError):
                yield None
                return

    def end(self) -> None:
        """Make sure the process is gone (SIGTERM, then SIGKILL) and release the queue and the pipe."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.tasks.cancel_join_thread()     # tasks a dead worker never took must not block the parent's exit
        self.tasks.close()
        self.conn.close()


def _parcels(tasks: Iterable[Task], size: int) -> Iterator[list[Task]]:
    iterator = iter(tasks)
    while parcel := list(itertools.islice(iterator, size)):
        yield parcel


def _usable_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:      # not Linux: no pinning information, the workers are not pinned
        return set(range(os.cpu_count() or 1))


def _how(process) -> str:
    code = process.exitcode
    if code is None:
        return "still running"
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}" + (": out of memory?" if -code == signal.SIGKILL else "")
