"""One video source as a ``detect`` job: frame records, a written copy (annotated or anonymised) and aligned crops.

:func:`run_video` reads the source with :class:`runtime.video.VideoReader`, detects the selected frames through
:func:`runtime.video.detect_frames` (the one detector, batched) and, per frame, in order:

* a detected frame's record goes to ``write_record`` (the CLI writes it as one JSON line);
* with ``copy_dir``, every frame is written to ``copy_dir/<name of the source>`` at the source's size and frame
  rate, with the faces of the last detected frame drawn (or hidden, with ``anonymize``): with ``every`` > 1 the
  frames between two detections show the faces of the earlier one;
* with ``crops_dir``, each reported face of a detected frame is written as ``<stem>_f<frame>_<k>.png`` (k from 0,
  by score), aligned by :mod:`runtime.align`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from retinaface_trt import detections
from retinaface_trt.errors import RetinaFaceError
from runtime.align import DEFAULT_CROP_SIZE
from runtime.face import DEFAULT_VIS_THRESHOLD
from runtime.video import DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class VideoSettings:
    """every: detect frames 0, every, 2·every, …; batch: frames per detector call (None: 8 on a GPU, 1 on a CPU);
    vis_threshold: faces reported, drawn, hidden and cropped from this score; timeout_s: see VideoReader;
    copy_dir: where the annotated (or, with ``anonymize``, an AnonymizeSettings, anonymised) copy goes;
    crops_dir / crop_size: aligned crops; progress: a frames/s line on stderr."""

    every: int = 1
    batch: int | None = None
    vis_threshold: float = DEFAULT_VIS_THRESHOLD
    timeout_s: float = DEFAULT_TIMEOUT_S
    copy_dir: str | None = None
    anonymize: object = None
    crops_dir: str | None = None
    crop_size: int = DEFAULT_CROP_SIZE
    progress: bool = True


@dataclass
class VideoTally:
    """What one source gave: ``frames`` decoded, ``detected`` of them, ``faces`` reported, ``seconds`` taken, and
    ``problem`` (None, or the line about frames that did not decode)."""

    frames: int = 0
    detected: int = 0
    faces: int = 0
    seconds: float = 0.0
    problem: str | None = None


def run_video(detector, source: str, settings: VideoSettings, write_record) -> VideoTally:
    """Process ``source`` (see the module doc); ``write_record(dict)`` takes each detected frame's record."""
    import time

    from runtime.jobs.tasks import default_batch
    from runtime.progress import Progress
    from runtime.video import VideoReader, detect_frames, frame_record

    every, tally, start = settings.every, VideoTally(), time.perf_counter()
    convert = None if settings.copy_dir else (lambda index: index % every == 0)
    with VideoReader(source, settings.timeout_s, convert) as reader, _copy(reader, source, settings) as copy:
        progress = Progress(reader.frames, f"detect {source}", enabled=settings.progress, unit="frames")
        last = None
        for item in detect_frames(detector, reader, every, settings.batch or default_batch(detector.device),
                                  settings.vis_threshold):
            if item.detected:
                write_record(frame_record(source, item))
                _write_crops(item, source, settings)
                tally.detected, tally.faces, last = tally.detected + 1, tally.faces + len(item.faces), item
            if copy is not None:
                copy.write(_hidden_or_drawn(item.image, last, settings.anonymize))
            tally.frames += 1
            progress.advance()
        progress.finish()
    tally.problem, tally.seconds = reader.problem, time.perf_counter() - start
    return tally


def _copy(reader, source: str, settings: VideoSettings):
    """The VideoWriter of the copy (a context manager), or a null context without ``copy_dir``."""
    import contextlib

    from runtime.video import VideoWriter, output_name

    if not settings.copy_dir:
        return contextlib.nullcontext()
    path = os.path.join(settings.copy_dir, output_name(source))
    if os.path.exists(source) and os.path.exists(path) and os.path.samefile(source, path):
        raise RetinaFaceError(f"the copy of {source} would replace it; choose another --save-dir")
    return VideoWriter(path, reader.width, reader.height, reader.fps, lossless=reader.codec == "ffv1")


def _hidden_or_drawn(image, last, anonymize):
    """The frame as written: the faces of the last detected frame ``last`` drawn or hidden (none yet: as is)."""
    if last is None:
        return image
    from runtime.jobs.tasks import shown_copy

    return shown_copy(image, last.report, anonymize)


def _write_crops(item, source: str, settings: VideoSettings) -> None:
    if not settings.crops_dir or not len(item.dets):
        return
    from retinaface_trt.fileio import write_bytes_atomic
    from runtime.align import encoded_crops
    from runtime.video import output_name

    stem = os.path.splitext(output_name(source))[0]
    for k, data in enumerate(encoded_crops(item.image, detections.landmarks(item.dets), settings.crop_size)):
        write_bytes_atomic(os.path.join(settings.crops_dir, f"{stem}_f{item.index:06d}_{k}.png"), data)
