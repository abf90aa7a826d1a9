"""Video files, streams and cameras through the one detection pipeline, frame by frame.

Sources (:func:`is_video_source`): files ending in :data:`VIDEO_SUFFIXES`, URLs that FFmpeg reads
(:data:`STREAM_SCHEMES`: rtsp, http, …) and a camera index (``0`` is ``/dev/video0``, through FFmpeg's v4l2
input on Linux). Frames are decoded by PyAV (FFmpeg; the ``video`` extra) in a thread of their own, ahead of the
detector, as BGR uint8 [H, W, 3]; the selected ones (every ``every``-th, from frame 0) run through
:meth:`runtime.detector.Detector.detect_arrays` in batches of ``batch`` (all frames of a video have one size, so
a batch is one backend call).

Records: one per detected frame, ``{"video": source, "frame": index (0-based, in decoding order), "time":
seconds from the stream's start (its presentation time stamp), "width", "height", "faces": [...]}`` with the
faces of :func:`runtime.face.report`.

Damage and stalls: a file that stops decoding part way (truncated, corrupt) gives the frames decoded before and
:attr:`VideoReader.problem`, one line about the rest; a source sending nothing for ``timeout_s`` seconds (a
stalled stream) ends the same way. A source that cannot be opened at all is a RetinaFaceError.

Written videos (:class:`VideoWriter`) have the source's size and average frame rate, and are written atomically
(:func:`retinaface_trt.fileio.atomic_write`). The codec follows the container: H.264 (libx264, CRF 18) in mp4,
mov and mkv; VP9 in webm; MPEG-4 part 2 in avi; a source coded losslessly with FFV1 is written with FFV1 (in mkv
and avi), so that an anonymised copy of a lossless video changes nothing outside the faces.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

from retinaface_trt.errors import RetinaFaceError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_FPS = Fraction(30)          # written videos of sources that declare no rate (some streams, cameras)
PREFETCH = 16                       # decoded frames waiting for the detector, at most
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}


def is_video_source(text: str) -> bool:
    """A video file (by its ending), a stream URL or a camera index."""
    lowered = str(text).lower()
    return (lowered.endswith(VIDEO_SUFFIXES) or lowered.split("://", 1)[0] in STREAM_SCHEMES and "://" in lowered
            or camera_index(text) is not None)


def camera_index(text: str) -> int | None:
    """``"0"`` → 0 for a camera index (digits that are not the name of an existing file), else None."""
    text = str(text)
    return int(text) if text.isdigit() and not os.path.exists(text) else None


def output_name(source: str) -> str:
    """The file name of a copy of ``source``: its own name for a file, ``camera0.mp4``, ``<host>.mp4`` for a URL."""
    index = camera_index(source)
    if index is not None:
        return f"camera{index}.mp4"
    if "://" in source:
        rest = source.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        stem = rest.rsplit("/", 1)[-1] if "/" in rest else rest
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "stream"
        return stem if stem.lower().endswith(VIDEO_SUFFIXES) else stem + ".mp4"
    return os.path.basename(source)


def require_av():
    """The ``av`` module (PyAV), or RetinaFaceError naming the ``video`` extra."""
    from retinaface_trt.extras import require

    return require("av", "video", "detect on videos")


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``index`` (0-based), ``time`` (seconds), ``image`` BGR uint8 [H, W, 3] or None (a
    frame the caller did not ask to convert)."""

    index: int
    time: float
    image: np.ndarray | None


class VideoReader:
    """The frames of one source, decoded in a thread of its own (see the module doc). A context manager.

    source:    file path, URL or camera index (as text)
    timeout_s: seconds to wait for the source to open and, after that, for more data
    convert:   index → whether that frame is needed as an array (default all); others are decoded, not converted
    After iteration: ``decoded`` (frames decoded) and ``problem`` (None, or a line about the frames that did not
    decode); ``width``, ``height``, ``fps`` (Fraction), ``frames`` (the count the file declares, or None) and
    ``codec`` are known once it is open.
    """

    def __init__(self, source: str, timeout_s: float = DEFAULT_TIMEOUT_S, convert=None):
        av = require_av()
        self.source, self.problem, self.decoded = str(source), None, 0
        self._convert = convert or (lambda index: True)
        index = camera_index(self.source)
        target, fmt = (f"/dev/video{index}", "v4l2") if index is not None else (self.source, None)
        try:
            self._container = av.open(target, format=fmt, timeout=(timeout_s, timeout_s))
        except (av.error.FFmpegError, OSError) as error:
            raise RetinaFaceError(f"cannot open video {self.source}: {_reason(error)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise RetinaFaceError(f"{self.source} holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"           # FFmpeg's frame and slice threads
        context = self._stream.codec_context
        self.width, self.height, self.codec = context.width, context.height, context.name
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = Fraction(rate) if rate else DEFAULT_FPS
        self.frames = self._stream.frames or None
        self.duration = _duration(self._container, self._stream)
        self.last_time = None
        self._queue: queue.Queue = queue.Queue(PREFETCH)
        self._stop = threading.Event()
        self._thread = None

    def __iter__(self) -> Iterator[Frame]:
        self._thread = threading.Thread(target=self._decode, name="retinaface-video", daemon=True)
        self._thread.start()
        while (item := self._queue.get()) is not None:
            self.decoded, self.last_time = self.decoded + 1, item.time
            yield item
        if self.problem is None:
            self.problem = self._shortfall()

    def _shortfall(self) -> str | None:
        """A line when fewer frames decoded than the file declares (as a count, or as a duration: more than two
        frame intervals missing at the end), else None."""
        if self.frames and self.decoded < self.frames:
            return (f"{self.source}: the video ends after {self.decoded} of the {self.frames} frames it declares "
                    "(truncated?); the frames before were processed")
        end = (self.last_time or 0.0) + float(1 / self.fps)
        if not self.frames and self.duration and end + 2 * float(1 / self.fps) < self.duration:
            return (f"{self.source}: the video ends at {end:.2f} s of the {self.duration:.2f} s it declares "
                    f"(truncated?); the {self.decoded} frames before were processed")
        return None

    def _decode(self) -> None:
        """Decoding thread: frames into the queue, then None. A demuxing or decoding error ends the video after
        the frames the decoder still holds (flushed), with ``problem`` set."""
        av = require_av()
        index = 0
        try:
            for packet in self._container.demux(self._stream):
                for frame in self._stream.decode(packet):      # the last, empty packet flushes the decoder
                    if self._stop.is_set():
                        return
                    self._put(self._frame(frame, index))
                    index += 1
        except (av.error.FFmpegError, OSError) as error:
            index = self._flush(index)
            self.problem = (f"{self.source}: decoding stopped after {index} frames ({_reason(error)}); the frames "
                            "before were processed")
        except Exception as error:          # noqa: BLE001 (anything else: the video must not look complete)
            self.problem = (f"{self.source}: decoding failed after {index} frames ({type(error).__name__}: {error}); "
                            "the frames before were processed")
        finally:
            self._put(None)

    def _flush(self, index: int) -> int:
        """The frames the decoder still holds after a failed read, into the queue; the next index."""
        try:
            for frame in self._stream.decode(None):
                self._put(self._frame(frame, index))
                index += 1
        except Exception:           # noqa: BLE001 (a decoder that cannot even flush has nothing more to give)
            pass
        return index

    def _frame(self, frame, index: int) -> Frame:
        image = frame.to_ndarray(format="bgr24") if self._convert(index) else None
        return Frame(index, _seconds(frame, index, self.fps), image)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(container, stream) -> float | None:
    """The duration the source declares, in seconds (None for live streams and cameras)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / 1_000_000 if container.duration else None


def _seconds(frame, index: int, fps: Fraction) -> float:
    """The frame's presentation time in seconds (from its time stamp; by its index where it has none)."""
    if frame.pts is not None and frame.time_base:
        return float(frame.pts * frame.time_base)
    return float(index / fps)


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return "no data within the timeout (the stream stalled)" if "Immediate exit" in text else text


@dataclass
class FrameFaces:
    """One frame and what is reported of it: the :class:`runtime.face.Report` of its detections (as for a still
    image), or None for a frame skipped by ``every``."""

    index: int
    time: float
    image: np.ndarray | None
    report: object = None

    @property
    def detected(self) -> bool:
        return self.report is not None

    @property
    def dets(self) -> np.ndarray | None:
        """The reported rows float32 [K, 15] (score ≥ the vis threshold), or None for a skipped frame."""
        return None if self.report is None else self.report.rows

    @property
    def faces(self) -> list:
        """The reported faces (:class:`runtime.face.Face`); none for a skipped frame."""
        return [] if self.report is None else self.report.faces


def detect_frames(detector, frames, every: int = 1, batch: int = 8, vis_threshold: float | None = None
                  ) -> Iterator[FrameFaces]:
    """Every frame of ``frames`` (an iterable of :class:`Frame`) in order, the ``every``-th ones (0, every, …)
    with their faces: batches of ``batch`` frames go to ``detector.detect_arrays`` as one call.

    vis_threshold: faces with a lower score are dropped (default :data:`runtime.face.DEFAULT_VIS_THRESHOLD`).
    Frames not selected are yielded with ``dets`` None (and their image, when decoded), for written videos.
    """
    from runtime.face import DEFAULT_VIS_THRESHOLD, report

    threshold = DEFAULT_VIS_THRESHOLD if vis_threshold is None else vis_threshold
    pending: list[Frame] = []
    selected = 0

    def flush():
        chosen = [f for f in pending if f.index % every == 0]
        found = iter(detector.detect_arrays([f.image for f in chosen]) if chosen else ())
        for frame in pending:
            if frame.index % every == 0:
                height, width = frame.image.shape[:2]
                yield FrameFaces(frame.index, frame.time, frame.image, report(None, width, height, next(found),
                                                                              threshold))
            else:
                yield FrameFaces(frame.index, frame.time, frame.image)
        pending.clear()

    for frame in frames:
        pending.append(frame)
        if frame.index % every == 0:
            if frame.image is None:
                raise RetinaFaceError(f"frame {frame.index} was selected but not decoded")
            selected += 1
            if selected % batch == 0:
                yield from flush()
    yield from flush()


def detect_video(detector, source: str, every: int = 1, batch: int | None = None,
                 vis_threshold: float | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[FrameFaces]:
    """The SDK's iterator over a video's frames and their faces (see :func:`detect_frames`); only the frames
    that are detected are yielded. A damaged or stalled source ends the iteration with a RetinaFaceError
    naming what was lost, after the frames that decoded."""
    from runtime.jobs.tasks import default_batch

    with VideoReader(source, timeout_s, convert=lambda index: index % every == 0) as reader:
        for item in detect_frames(detector, reader, every, batch or default_batch(detector.device), vis_threshold):
            if item.detected:
                yield item
        if reader.problem:
            raise RetinaFaceError(reader.problem)


def frame_record(source: str, item: FrameFaces) -> dict:
    """The JSON record of a detected frame (see the module doc): its report's record without the image name."""
    record = dict(item.report.record)
    del record["image"]
    return {"video": source, "frame": item.index, "time": round(item.time, 6), **record}


class VideoWriter:
    """Writes BGR uint8 [H, W, 3] frames to ``path`` (its container from the ending) at ``fps``, atomically: the
    file appears at ``path`` only when :meth:`close` finished; on an error nothing is left. A context manager.

    lossless: FFV1 (mkv and avi only), as for a source coded with FFV1 (see the module doc). Leaving the ``with``
    block by an error drops the file; by KeyboardInterrupt (Ctrl-C, how a stream is stopped) finishes it.
    """

    def __init__(self, path: str, width: int, height: int, fps: Fraction, lossless: bool = False):
        import contextlib

        from retinaface_trt.fileio import atomic_write

        av = require_av()
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in CONTAINERS:
            raise RetinaFaceError(f"cannot write video {path}: expected one of {', '.join(VIDEO_SUFFIXES)}")
        codec, options, pix_fmt = _codec(suffix, lossless, width, height)
        self._stack = contextlib.ExitStack()
        handle = self._stack.enter_context(atomic_write(path, "wb", force=True))
        self._container = av.open(handle, mode="w", format=CONTAINERS[suffix])
        self._stream = self._container.add_stream(codec, rate=fps, options=options)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        self._stream.codec_context.time_base = 1 / fps
        self._count, self._av = 0, av

    def write(self, bgr: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts = self._count
        self._count += 1
        self._container.mux(self._stream.encode(frame))

    def close(self, ok: bool = True) -> None:
        """Finish the file (``ok``) or drop it (also when finishing fails)."""
        try:
            if ok:
                self._container.mux(self._stream.encode(None))
            self._container.close()
        except BaseException as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        dropped = None if ok else RetinaFaceError("video not finished")
        self._stack.__exit__(type(dropped) if dropped else None, dropped, None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind, *exc) -> None:
        # Ctrl-C is how a live stream or camera is stopped: the copy keeps the frames written so far
        self.close(ok=kind is None or issubclass(kind, KeyboardInterrupt))


def _codec(suffix: str, lossless: bool, width: int, height: int) -> tuple[str, dict, str]:
    """(codec, options, pixel format) for a container."""
    if lossless and suffix in (".mkv", ".avi"):
        return "ffv1", {}, "bgr0"
    even = width % 2 == 0 and height % 2 == 0
    if suffix == ".webm":
        return "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0"}, \
            "yuv420p" if even else "yuv444p"
    if suffix == ".avi":
        return "mpeg4", {"qscale": "3"}, "yuv420p"
    return "libx264", {"crf": "18", "preset": "veryfast"}, "yuv420p" if even else "yuv444p"
