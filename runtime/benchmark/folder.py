"""``retinaface-trt benchmark --folder DIR``: images/s of ``detect`` over a folder beside the decode-only bound.

Both passes read the same files with the same reader (:class:`runtime.jobs.reader.ImageReader`: the same
decoder, threads and pixel budget), so their ratio is the figure and a loaded machine shifts both:

1. ``decode``: the reader alone; each decoded image is dropped at once (its pixels given back).
2. ``detect``: the job pipeline of the ``detect`` command (:func:`runtime.jobs.pipeline.detect_stream`: reader,
   batches of one canvas size, two batches with the detector, records made), each record also turned into its
   JSON line as ``--json-lines`` writes it; nothing is written to disk.

Before the timed passes, one untimed pass over the first ``warmup`` images loads the files into the page cache
for the decoder and lets the detector set up what it sets up once per canvas size (CUDA graphs, cuDNN plans;
with ``stretch`` and ``letterbox``, :meth:`runtime.detector.Detector.prepare` first plans full batches of the
input size, which a long job reaches after a few batches); with ``--resize original`` over photos of many sizes
most sizes are still new in the timed pass: that cost is part of the figure, as it is part of a user's run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from runtime.budget import PixelBudget
from runtime.face import to_json
from runtime.jobs.pipeline import decoding, detect_stream
from runtime.jobs.reader import END, ImageReader, TaskList
from runtime.jobs.tasks import JobSettings, Task


@dataclass(frozen=True)
class FolderResult:
    decoder: str
    images: int
    failed: int
    faces: int
    decode_s: float
    detect_s: float
    peak_pixels: int

    @property
    def decode_per_s(self) -> float:
        return self.images / self.decode_s

    @property
    def detect_per_s(self) -> float:
        return self.images / self.detect_s

    def as_dict(self) -> dict:
        return {"decoder": self.decoder, "images": self.images, "failed": self.failed, "faces": self.faces,
                "decode_images_per_s": round(self.decode_per_s, 1), "detect_images_per_s": round(self.detect_per_s, 1),
                "ratio": round(self.detect_per_s / self.decode_per_s, 3), "decode_s": round(self.decode_s, 3),
                "detect_s": round(self.detect_s, 3), "peak_decoded_megapixels": round(self.peak_pixels / 1e6, 1)}


def decode_pass(paths: list[str], settings: JobSettings, max_pixels: int, device) -> tuple[float, int]:
    """Seconds to read and decode ``paths`` with the job reader's settings (sized for a detector on ``device``),
    and the most pixels decoded at once."""
    budget = PixelBudget(settings.pixel_budget)
    tasks = TaskList(Task(i, path) for i, path in enumerate(paths))
    start = time.perf_counter()
    with ImageReader(tasks, settings.read_threads, settings.prefetch, settings.queued, max_pixels,
                     budget=budget, **decoding(settings, device)) as reader:
        while (item := reader.get()) is not END:
            budget.give(item.pixels)
    return time.perf_counter() - start, budget.peak


def detect_pass(detector, paths: list[str], settings: JobSettings) -> tuple[float, int, int]:
    """Seconds to detect ``paths`` through the job pipeline, JSON lines made; the faces reported and the inputs
    that failed."""
    faces = failed = 0
    start = time.perf_counter()
    for outcome in detect_stream(detector, TaskList(Task(i, path) for i, path in enumerate(paths)), settings):
        to_json(outcome.record)
        faces += len(outcome.record["faces"])
        failed += outcome.failed
    return time.perf_counter() - start, faces, failed


def folder_benchmark(detector, paths: list[str], settings: JobSettings, warmup: int) -> FolderResult:
    """The decode-only pass, then the detect pass, over ``paths`` (after an untimed pass over ``warmup`` of them)."""
    settings = settings.sized(detector)
    if warmup:
        if detector.resize in ("stretch", "letterbox"):
            detector.prepare(batches=(settings.batch,))    # full batches' shape planned now (seconds in float16)
        detect_pass(detector, paths[:warmup], settings)
    decode_s, peak = decode_pass(paths, settings, detector.max_pixels, detector.device)
    detect_s, faces, failed = detect_pass(detector, paths, settings)
    return FolderResult(settings.decoder, len(paths), failed, faces, decode_s, detect_s, peak)
