"""What flows through a job: a :class:`Task` (one input) becomes an :class:`Outcome` (its JSON record).

Records are :mod:`runtime.face`'s: ``{"image", "width", "height", "faces"}`` with the faces scoring at least the
vis threshold, or ``{..., "error"}`` for an input that could not be processed, made from the detections array at
once (:func:`runtime.face.report`); Face objects only for annotated copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from retinaface_trt import detections
from runtime.face import DEFAULT_VIS_THRESHOLD, error_record, report

# How long the reader may stall (no image decoded) before the images waiting run as a smaller batch, in seconds.
MAX_WAIT_S = 0.01
# The default reading threads at most: decoding scales with the cores (on the 16-core GPU machine, 16 threads of
# cv2.imdecode decoded 1,028 photos/s and 8 threads 596, 2026-12-07); past this, the disk or the GIL bounds it.
MAX_READ_THREADS = 32
DECODE_BATCH = 32        # JPEGs the reader's feeder decodes with nvJPEG at once, at most (runtime.jobs.reader)


@dataclass(frozen=True)
class Task:
    """One input of a job: ``index`` is its position among the job's inputs (0-based), ``path`` as given;
    ``error`` is set for an input already known to fail (a glob matching nothing, an unreadable folder)."""

    index: int
    path: str
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The final form of one task: its record (see the module doc) and, when annotated copies are asked for and
    the image was read, the encoded copy (bytes in the format of the input's extension: annotated, or anonymised);
    with crops asked for, the reported faces aligned by :mod:`runtime.align`, as PNG bytes, by score."""

    index: int
    record: dict
    annotated: bytes | None = None
    crops: tuple[bytes, ...] = ()

    @property
    def failed(self) -> bool:
        return "error" in self.record


@dataclass(frozen=True)
class JobSettings:
    """How one device works through its tasks (picklable: worker processes get a copy).

    batch:         images per ``detect_arrays`` call, all of one canvas size; None: :func:`default_batch`
    read_threads:  threads reading and decoding images ahead of the detector
    vis_threshold: faces reported from this score (records and copies)
    annotate:      make annotated copies (drawn and encoded by the reading threads' sibling pool)
    anonymize:     a :class:`runtime.anonymize.AnonymizeSettings`: the copies hide the faces instead
    crop_size:     make aligned crops of this side (None: none)
    max_wait_s:    how long the reader may stall (no image decoded) before waiting images run as a smaller batch
    pixel_budget:  pixels of the decoded images alive at once, and of one batch, per device; None: this
                   machine's (:func:`runtime.budget.pixel_budget`); one larger image still runs, alone
    in_flight:     batches with the detector at once (one on the device while the next is staged and uploaded)
    host_share:    worker processes of this run on this host (each takes that share of the host's memory when
                   ``pixel_budget`` is None)
    decoder:       ``auto``, ``cv2`` or ``nvjpeg`` (:func:`runtime.image_io.resolve_decoder`, decided for each
                   device's detector by :meth:`sized`: ``auto`` is ``cv2``, the reading threads decoding on
                   every core); with ``nvjpeg`` the reader decodes JPEGs on the device

    Decoded images alive at once, per device, whatever the number of tasks (:meth:`image_bound`): ``prefetch``
    submitted and one in the reader's hands, ``queued`` handed on, one being taken by the batcher, ``hold``
    waiting there for more of their size, ``in_flight`` batches being detected and one more being started while
    the oldest one's records are made; and their pixels stay within ``pixel_budget`` whatever their sizes.
    """

    batch: int | None = None
    read_threads: int = 2
    vis_threshold: float = DEFAULT_VIS_THRESHOLD
    annotate: bool = False
    anonymize: object = None
    crop_size: int | None = None
    max_wait_s: float = MAX_WAIT_S
    pixel_budget: int | None = None
    in_flight: int = 2
    host_share: int = 1
    decoder: str = "auto"

    @property
    def prefetch(self) -> int:
        """Reads submitted ahead: every thread busy, and as many waiting for a thread; with nvJPEG, at least
        one decoding call's worth."""
        return max(2 * self.read_threads, DECODE_BATCH if self.decoder == "nvjpeg" else 0)

    @property
    def queued(self) -> int:
        """Decoded images handed on by the reader and not yet taken: one batch."""
        return self.batch or 1

    @property
    def hold(self) -> int:
        """Images the batcher may keep waiting for more of their size (when reached, the oldest size runs)."""
        return 2 * (self.batch or 1)

    def sized(self, detector) -> "JobSettings":
        """These settings for ``detector`` (its ``device`` and ``backend.precision``): ``batch`` decided
        (:func:`default_batch`) and ``decoder`` resolved to ``cv2`` or ``nvjpeg``."""
        from dataclasses import replace

        from runtime.image_io import resolve_decoder

        return replace(self, batch=self.batch or default_batch(detector.device),
                       decoder=resolve_decoder(self.decoder, detector.device, detector.backend.precision,
                                               folder=True))

    def image_bound(self) -> int:
        """The most decoded images that exist at once in one device's pipeline (see the class doc)."""
        return (self.prefetch + 1) + self.queued + 1 + self.hold + (self.in_flight + 1) * (self.batch or 1)


def default_batch(device) -> int:
    """8 on a GPU (a batch keeps it busy between the host's steps), 1 on a CPU (a batch is not faster there)."""
    return 8 if getattr(device, "type", str(device).split(":")[0]) == "cuda" else 1


def default_read_threads(workers: int = 1) -> int:
    """The CPUs this process may use, shared by ``workers`` worker processes, at least 1, at most MAX_READ_THREADS."""
    from runtime.device import cpu_cores

    return max(1, min(MAX_READ_THREADS, cpu_cores() // max(1, workers)))


def detected(task: Task, image: np.ndarray, dets: np.ndarray, settings: JobSettings) -> Outcome:
    """The outcome of ``task`` from its BGR ``image`` [H, W, 3] (ndarray or device tensor) and its detections float32 [K, 15]
    (:meth:`runtime.detector.Detector.detect_arrays`, by score)."""
    shown = report(task.path, image.shape[1], image.shape[0], dets, settings.vis_threshold)
    if (settings.annotate or settings.crop_size) and not isinstance(image, np.ndarray):
        image = image.cpu().numpy()             # decoded on the device (nvJPEG): copies are drawn on the host
    copy = annotated_copy(task.path, image, shown, settings.anonymize) if settings.annotate else None
    crops = ()
    if settings.crop_size:
        from runtime.align import encoded_crops

        crops = tuple(encoded_crops(image, detections.landmarks(shown.rows), settings.crop_size))
    return Outcome(task.index, shown.record, copy, crops)


def failed(task: Task, message: str) -> Outcome:
    """The outcome of a task that could not be processed; ``message`` names the input (prefixed when it does not)."""
    named = message if task.path in message else f"{task.path}: {message}"
    return Outcome(task.index, error_record(task.path, named))


def annotated_copy(path: str, bgr: np.ndarray, shown, anonymize=None) -> bytes:
    """:func:`shown_copy`, encoded in the format of ``path``'s extension."""
    from runtime.draw import encode_like

    return encode_like(os.path.basename(path), shown_copy(bgr, shown, anonymize))


def shown_copy(bgr: np.ndarray, shown, anonymize=None) -> np.ndarray:
    """``bgr`` with the faces of ``shown`` (the image's :class:`runtime.face.Report`) drawn as detect.py draws
    them, or, with ``anonymize`` (an AnonymizeSettings), their boxes hidden (no Face objects needed). Images
    and video frames alike."""
    if anonymize is not None:
        from runtime.anonymize import anonymized

        return anonymized(bgr, detections.boxes(shown.rows), anonymize)
    from runtime.draw import draw_faces

    return draw_faces(bgr, shown.faces)
