"""The HTTP service's settings, their defaults and their ranges, in one light module (no ASGI imports).

The command line (:mod:`runtime.cli.serve`) declares its flags from these defaults and the library
(:func:`runtime.serve.app.create_app`) checks the values again, so a bad value is refused the same way from
Python and from the shell: one :class:`RetinaFaceError` line naming the setting, its range and the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from retinaface_trt.errors import RetinaFaceError
from runtime.face import DEFAULT_VIS_THRESHOLD
from retinaface_trt.thresholds import Thresholds
from runtime.options import check_count, check_probability

DEFAULT_HOST = "127.0.0.1"   # loopback: exposing the service is a decision the user takes with --host
DEFAULT_PORT = 8000
MAX_PORT = 65535
MIB = 1 << 20
GPU_MAX_BATCH = 16   # the default --max-batch on a GPU


def check_port(value) -> int:
    """``value`` as a TCP port number in 0..65535 (0: any free port); else RetinaFaceError."""
    port = check_count("port", value, low=0)
    if port > MAX_PORT:
        raise RetinaFaceError(f"port must be an integer in 0..{MAX_PORT}, found {value!r}")
    return port


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches, bounds and answers requests. Checked when created.

    max_batch:        images per ``Detector.detect_arrays`` call (default None: 1 on a CPU, where a batch is not
                      faster and each answer is then exactly ``Engine.infer``'s; 16 on a GPU)
    max_delay_ms:     how long the worker waits for more requests after the first one, in ms (default 2)
    max_queue:        requests admitted at once (reading, decoding, waiting or running); one more gets
                      503 with ``Retry-After`` (default 64); /readyz answers 503 while it is reached
    pixel_budget:     pixels of the images admitted at once (decoding, waiting, running); a request whose image
                      would exceed it gets 503 with ``Retry-After`` (an image alone always runs). Default 0:
                      :func:`runtime.budget.pixel_budget` of the detector's device. Memory is then bounded by about
                      max_queue × max_body_mib + 192 bytes × pixel_budget (or one image of max_pixels)
    header_timeout_s: a connection that has not sent a request's headers this long after it opened (or after
                      its previous answer) is closed (default 10)
    body_timeout_s:   a request whose body has not arrived this long after its headers gets 408 and its
                      connection is closed (default 30)
    max_body_mib:     largest request body in MiB; a larger one gets 413 (default 32)
    retry_after_s:    the ``Retry-After`` of a 503, in seconds (default 1)
    shutdown_timeout_s: how long a stopping server waits for in-flight requests, in seconds (default 30)
    vis_threshold:    faces in a record score at least this, unless a request asks for another (default 0.6)
    detection:        the post-processing the detector runs with; a request may raise its confidence
                      threshold or lower its keep_top_k, never the reverse (see :mod:`runtime.serve.requests`)
    workers:          processes serving on the one listening socket (default 1; see :mod:`runtime.serve.workers`);
                      each has its own model and its own ``max_queue``, and a ``1 / workers`` share of the
                      host's memory for its default pixel budget
    """

    max_batch: int | None = None
    max_delay_ms: int = 2
    max_queue: int = 64
    max_body_mib: int = 32
    pixel_budget: int = 0
    header_timeout_s: int = 10
    body_timeout_s: int = 30
    retry_after_s: int = 1
    shutdown_timeout_s: int = 30
    vis_threshold: float = DEFAULT_VIS_THRESHOLD
    detection: Thresholds = field(default_factory=Thresholds)
    workers: int = 1

    def __post_init__(self):
        for name in ("max_queue", "max_body_mib", "retry_after_s", "header_timeout_s", "body_timeout_s", "workers"):
            object.__setattr__(self, name, check_count(name, getattr(self, name)))
        if self.max_batch is not None:
            object.__setattr__(self, "max_batch", check_count("max_batch", self.max_batch))
        for name in ("max_delay_ms", "shutdown_timeout_s", "pixel_budget"):
            object.__setattr__(self, name, check_count(name, getattr(self, name), low=0))
        object.__setattr__(self, "vis_threshold", check_probability("vis_threshold", self.vis_threshold))
        if not isinstance(self.detection, Thresholds):
            raise RetinaFaceError(f"detection must be a Thresholds, found {type(self.detection).__name__}")

    def batch_for(self, device) -> int:
        """``max_batch``, or its default for ``device`` (a torch.device or its name)."""
        if self.max_batch is not None:
            return self.max_batch
        return GPU_MAX_BATCH if str(device).startswith("cuda") else 1

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_mib * MIB
