"""``retinaface-trt serve --workers N``: N processes answering on one listening socket.

One process parses, decodes and batches every request and formats every answer behind one GIL; on a GPU that
can bound it before the device does (one process on an H100: 346 requests/s, docs/benchmarks.md; not
profiled). Each worker is the whole service of :mod:`runtime.serve.app` (its own model, micro-batcher,
``max_queue``, readiness and metrics) on the listening socket that the parent bound: the kernel hands each new
connection to one of them.

Lifecycle, in the parent (:func:`serve_workers`): the first worker is started alone and the others once its model
is built (an engine or an ONNX export that the backend caches is made once, by the first); the listening line is
printed once every worker is up. SIGINT and SIGTERM are passed on to the workers, each of which drains its
requests in flight; the parent returns 0 once they all ended cleanly. A worker that fails to start, or ends while
the others serve, stops them all, and the command ends with status 1: a supervisor (systemd, Kubernetes) then
restarts the whole service, rather than it running on with fewer workers than asked for.

Workers are started with ``spawn`` (a forked child cannot use CUDA). CPU workers get disjoint shares of the CPUs
(:func:`runtime.jobs.devices.cpu_shares`), and as many network threads as CPUs in their share.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import sys
import time
from dataclasses import dataclass, replace

from retinaface_trt.errors import RetinaFaceError
from runtime.serve.server import STOP_SIGNALS

STOP_TIMEOUT_S = 120.0      # beyond the shutdown timeout: how long the parent waits for workers to end
_POLL_S = 0.2


@dataclass(frozen=True)
class Service:
    """What each worker serves: ``Detector.from_options(**options)`` behind the app of ``settings``, warmed up
    with a blank image of ``input_size`` (W, H); ``verbose``: uvicorn's access log."""

    options: dict
    input_size: tuple[int, int]
    settings: object
    verbose: bool = False


def run_service(service: Service, sock, on_ready) -> None:
    """Build the detector and the app, call ``on_ready()``, and serve on ``sock`` until SIGINT or SIGTERM
    (:func:`runtime.serve.server.serve_forever`): the one process of ``serve``, or one of its workers."""
    import numpy as np

    from runtime.detector import Detector
    from runtime.serve.app import create_app
    from runtime.serve.server import serve_forever, uvicorn_server

    width, height = service.input_size
    with Detector.from_options(**service.options) as detector:
        app = create_app(detector, service.settings, warmup=np.zeros((height, width, 3), np.uint8))
        server = uvicorn_server(app, service.settings.shutdown_timeout_s, verbose=service.verbose,
                                header_timeout_s=service.settings.header_timeout_s)
        on_ready()
        serve_forever(server, sock)


def serve_workers(service: Service, sock, announce) -> int:
    """Run ``service.settings.workers`` worker processes on ``sock`` (see the module doc); ``announce()`` once
    they are all up. The command's exit status: 0 after a clean stop, 1 when a worker failed."""
    from runtime.device import resolve_device
    from runtime.jobs.devices import cpu_shares

    count = service.settings.workers
    device = str(resolve_device(service.options.get("device")))
    shares = cpu_shares([device] * count, os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    started = context.Queue()
    up: set = set()            # the workers that said they are up
    workers: list = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        for index in range(count):
            worker = context.Process(target=_worker_main, name=f"retinaface-serve-{index}",
                                     args=(service, sock, index, shares[index], started,
                                           logging.getLogger().getEffectiveLevel()))
            worker.start()
            workers.append(worker)
            if (index == 0 or index == count - 1) and not _wait_started(workers, up, started, lambda: stopping):
                failed = not stopping
                stop()
                return _finish(workers, failed)
        announce()
        while not stopping and all(worker.exitcode is None for worker in workers):
            workers[0].join(_POLL_S)
        failed = not stopping            # a worker ended on its own while the others served
        if failed:
            print("retinaface-trt serve: a worker ended "
                  f"({_how_ended(next(w for w in workers if w.exitcode is not None))}); stopping the others",
                  file=sys.stderr, flush=True)
            stop()
        return _finish(workers, failed)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:
            if worker.exitcode is None:
                worker.kill()


def _wait_started(workers: list, up: set, started, stopped) -> bool:
    """Wait until every worker started so far is in ``up`` (the indexes read from ``started`` are added to it);
    False when one ended first, or a stop came."""
    while len(up) < len(workers):
        if stopped() or any(worker.exitcode is not None for worker in workers):
            return False
        try:
            up.add(started.get(timeout=_POLL_S))
        except queue.Empty:
            pass
    return True


_STOPPED = (0, 130, -signal.SIGTERM, -signal.SIGINT)    # how a worker told to stop may end (still loading: killed)


def _finish(workers: list, failed: bool) -> int:
    """Wait for every worker to end (each drains its requests); the exit status of the command: 1 when
    ``failed`` (a worker ended on its own) or a worker ended otherwise than stopped, else 0."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return 1 if failed or any(worker.exitcode not in _STOPPED for worker in workers) else 0


def _how_ended(worker) -> str:
    code = worker.exitcode
    if code is not None and code < 0:
        return f"worker {worker.name} killed by {signal.Signals(-code).name}"
    return f"worker {worker.name} exited with status {code}"


def _worker_main(service: Service, sock, index: int, cpus, started, log_level: int) -> None:
    """A worker: the service on the shared socket; its failure to start is one line on stderr and status 1."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if cpus:
        os.sched_setaffinity(0, cpus)                # before torch starts its threads
        service = replace(service, options={**service.options,
                                            "threads": service.options.get("threads") or len(cpus)})
    try:
        run_service(service, sock, on_ready=lambda: started.put(index))
    except RetinaFaceError as error:
        print(f"retinaface-trt serve: worker {index}: error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:                        # Ctrl-C while the model was loading
        sys.exit(130)
