"""The ASGI app (Starlette): ``POST /v1/detect``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

``POST /v1/detect`` answers with the SDK's JSON record, byte for byte what ``Engine.infer`` returns for
the same image and thresholds (:func:`runtime.face.report`), or with ``{"error": "<one line>"}`` and:

* 400: a body that is not what :mod:`runtime.serve.requests` describes, or an image the SDK refuses
  (its one-line message: invalid base64, not an image, too many pixels, ...);
* 408: a body that has not arrived ``body_timeout_s`` after the headers (the connection is closed);
* 413: a body over ``max_body_mib``; 415: another Content-Type;
* 503 with ``Retry-After``: ``max_queue`` requests are already admitted, the image would take the pixels
  admitted at once over ``pixel_budget`` (:mod:`runtime.budget`), or the server is stopping;
* 500: anything else (logged with its traceback).

A request is admitted before its body is read, so a refused one costs no memory; the body is read up
to the limit within ``body_timeout_s``, its image's pixels are reserved from the pixel budget once its header is
read (before it is decoded), decoded in a thread of the thread pool, and queued to the :class:`MicroBatcher`,
whose one worker thread owns the detector. ``/healthz`` is 200 while the process serves; ``/readyz`` is 200 once
the warm-up batch ran, 503 before that, while stopping, and while saturated (``max_queue`` requests admitted, or
the pixel budget taken). On shutdown (uvicorn waits for the requests in
flight first) the worker finishes what was queued and stops.

Starlette rather than FastAPI: the endpoint takes two kinds of body under one size limit and answers
with the SDK's own error lines; request models would add pydantic and a second copy of the thresholds'
ranges, which live in :mod:`runtime.options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from retinaface_trt.errors import RetinaFaceError
from runtime.face import report, to_json
from runtime.serve import requests
from runtime.serve.batcher import MicroBatcher, ShuttingDown
from runtime.serve.metrics import CONTENT_TYPE, ServeMetrics
from runtime.serve.requests import RequestError
from runtime.serve.settings import ServeSettings

log = logging.getLogger("retinaface_trt")

JSON = "application/json"
CLIENT_GONE = 499   # the status recorded (never sent) for a client that left before its answer


class Saturated(RetinaFaceError):
    """A request whose image does not fit in what remains of the pixel budget (answered 503)."""


class Service:
    """What the routes share: detector, settings, metrics, the batcher and the admission count.

    detector: anything with ``detect_arrays`` and ``max_pixels`` (:class:`runtime.detector.Detector`);
              the caller keeps ownership (and closes it after the server stopped)
    warmup:   BGR uint8 image run once before readiness (see :class:`MicroBatcher`), or None
    """

    def __init__(self, detector, settings: ServeSettings, warmup=None):
        from runtime.budget import PixelBudget, pixel_budget

        self.detector = detector
        self.settings = settings
        self.metrics = ServeMetrics()
        self.pixels = PixelBudget(settings.pixel_budget or pixel_budget(detector.device, settings.workers))
        self.batcher = MicroBatcher(detector, settings.batch_for(detector.device), settings.max_delay_ms / 1000,
                                    self.metrics, warmup)
        self.admitted = 0     # changed on the event loop's thread only
        self.stopping = False

    def admit(self) -> bool:
        """Take one of the ``max_queue`` places, if one is free."""
        if self.stopping or self.admitted >= self.settings.max_queue:
            return False
        self.admitted += 1
        self.metrics.in_flight.set(self.admitted)
        return True

    def release(self) -> None:
        self.admitted -= 1
        self.metrics.in_flight.set(self.admitted)

    def reserve(self, pixels: int, held: list[int]) -> None:
        """Take ``pixels`` of the budget for a request (added to its ``held``), or raise :class:`Saturated`."""
        if not self.pixels.try_take(pixels):
            raise Saturated(f"the server holds {self.pixels.taken} of its {self.pixels.limit} pixels of images at "
                            f"once and this image has {pixels}; retry after {self.settings.retry_after_s} s")
        held.append(pixels)

    @property
    def saturated(self) -> bool:
        return self.admitted >= self.settings.max_queue or self.pixels.taken >= self.pixels.limit

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.batcher.start()
        try:
            yield
        finally:
            self.stopping = True
            await run_in_threadpool(self.batcher.stop, self.settings.shutdown_timeout_s or None)


def create_app(detector, settings: ServeSettings | None = None, warmup=None) -> Starlette:
    """The Starlette app serving ``detector`` (see the module docstring); ``app.state.service`` is its Service."""
    service = Service(detector, settings or ServeSettings(), warmup)
    routes = [Route("/v1/detect", _timed(service, "/v1/detect", _detect), methods=["POST"]),
              Route("/healthz", _timed(service, "/healthz", _healthz), methods=["GET"]),
              Route("/readyz", _timed(service, "/readyz", _readyz), methods=["GET"]),
              Route("/metrics", _metrics(service), methods=["GET"])]
    app = Starlette(routes=routes, lifespan=service.lifespan)
    app.state.service = service
    return app


def _timed(service: Service, route: str, handler):
    """An endpoint around ``handler(service, request) -> Response`` that counts and times its answers."""
    async def endpoint(request: Request) -> Response:
        start = time.perf_counter()
        response = await handler(service, request)
        service.metrics.answered(route, response.status_code, time.perf_counter() - start)
        return response
    return endpoint


async def _detect(service: Service, request: Request) -> Response:
    if not service.admit():
        return _overloaded(service)
    held: list[int] = []   # pixels this request reserved
    try:
        return _json(200, await _detect_record(service, request, held))
    except (ShuttingDown, Saturated) as error:
        return _overloaded(service, str(error))
    except _BodyTimeout as error:
        response = _error(408, str(error))
        response.headers["Connection"] = "close"
        return response
    except RequestError as error:
        return _error(error.status, str(error))
    except RetinaFaceError as error:
        return _error(400, str(error))
    except ClientDisconnect:
        return _error(CLIENT_GONE, "the client disconnected before the request was read")
    except Exception as error:   # noqa: BLE001 - one line for the client, the traceback for the log
        log.exception("serve: request failed")
        return _error(500, f"internal error ({type(error).__name__}: {error}); see the server's log")
    finally:
        service.release()
        service.pixels.give(sum(held))


async def _detect_record(service: Service, request: Request, held: list[int]) -> dict:
    """Read, check and decode the request, run it through the batcher; the SDK's record."""
    kind = requests.media_type(request.headers.get("content-type"))
    try:
        body = await asyncio.wait_for(_read_body(request, service.settings.max_body_bytes),
                                      service.settings.body_timeout_s)
    except asyncio.TimeoutError:
        raise _BodyTimeout(f"the request body did not arrive within {service.settings.body_timeout_s} s "
                           "(--body-timeout); send it at once") from None
    # JSON parsing and image decoding take milliseconds per megabyte: in a thread, not on the event loop
    parsed, bgr = await run_in_threadpool(_parse_and_decode, service, kind, body, dict(request.query_params),
                                          held)
    dets = await asyncio.wrap_future(service.batcher.submit(bgr))
    overrides = parsed.overrides
    return report(parsed.name, bgr.shape[1], bgr.shape[0], overrides.select(dets), overrides.vis_threshold).record


def _parse_and_decode(service: Service, kind: str, body: bytes, query: dict, held: list[int]):
    """(DetectRequest, BGR uint8 [H, W, 3]) of a body of media type ``kind``; the image's pixels are reserved
    (into ``held``) before it is decoded."""
    if kind == requests.JSON_TYPE:
        parsed = requests.parse_json(body, service.settings)
    else:
        parsed = requests.parse_image(body, query, service.settings)
    return parsed, parsed.decode(service.detector.max_pixels, lambda pixels: service.reserve(pixels, held))


class _BodyTimeout(RetinaFaceError):
    """A request body that did not arrive within ``body_timeout_s`` (answered 408)."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> RequestError:
    return RequestError(413, f"the request body is over the server's limit of {limit >> 20} MiB "
                             "(--max-body-mib); send a smaller image or start the server with a higher limit")


async def _healthz(service: Service, request: Request) -> Response:
    return _json(200, {"status": "ok"})


async def _readyz(service: Service, request: Request) -> Response:
    batcher = service.batcher
    if service.stopping:
        return _json(503, {"status": "stopping"})
    if not batcher.running:
        return _json(503, {"status": "failed", "error": "the batch worker stopped; see the server's log"})
    if batcher.warmup_error:
        return _json(503, {"status": "failed", "error": batcher.warmup_error})
    if not batcher.ready.is_set():
        return _json(503, {"status": "warming up"})
    if service.saturated:
        return _json(503, {"status": "saturated", "in_flight": service.admitted,
                           "pixels_held": service.pixels.taken, "pixel_budget": service.pixels.limit})
    return _json(200, {"status": "ready"})


def _metrics(service: Service):
    async def endpoint(request: Request) -> Response:
        return Response(service.metrics.exposition(), 200, media_type=CONTENT_TYPE)
    return endpoint


def _overloaded(service: Service, message: str | None = None) -> Response:
    limit = service.settings.max_queue
    message = message or (f"the server is at its limit of {limit} requests in flight (--max-queue); "
                          f"retry after {service.settings.retry_after_s} s")
    response = _error(503, message)
    response.headers["Retry-After"] = str(service.settings.retry_after_s)
    return response


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


def _json(status: int, value) -> Response:
    return Response(to_json(value), status, media_type=JSON)
