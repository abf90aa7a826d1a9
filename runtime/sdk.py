"""The SDK of the deployment notes: ``Engine(...).infer(image_base64) -> JSON string``.

Example::

    from runtime import Engine

    with Engine(weights="weights/mobilenet0.25_Final.pth", device="cpu") as engine:
        record = json.loads(engine.infer(base64_text))
        for line in engine.video("clip.mp4", every=2):      # one JSON record per detected frame
            ...

Errors (bad base64, not an image, too large, bad weights, a released engine) raise
:class:`retinaface_trt.errors.RetinaFaceError` with a one-line message.
"""

from __future__ import annotations

import contextlib
import threading

from retinaface_trt.errors import RetinaFaceError
from runtime.face import DEFAULT_VIS_THRESHOLD, report, to_json
from runtime.image_io import base64_bytes, decode_for, resolve_decoder
from runtime.options import check_probability


class Engine:
    """Face detection on base64-encoded images, returning one JSON record per call.

    weights / engine: a .pth/.wts weights file, or a TensorRT engine file (one of them is needed)
    backend:          ``auto`` (default), ``tensorrt``, ``torch`` or ``onnxruntime``
    device:           ``auto`` (CUDA when available, default), ``cpu``, ``cuda``, ``cuda:N``
    vis_threshold:    faces with a lower score are left out of the record (default 0.6)
    decoder:          ``auto`` (nvJPEG on a CUDA device when torchvision is installed and the precision is not
                      fp32, else OpenCV: :func:`runtime.image_io.resolve_decoder`), ``cv2`` (``cv2.imdecode``,
                      exactly detect.py's pixels) or ``nvjpeg``; both give BGR
    detector:         an existing :class:`runtime.detector.Detector` to use instead of building one (the Engine
                      then owns it: ``release`` closes it)
    **options:        :class:`runtime.detector.Detector` options (resize, input_size, thresholds, max_pixels)
    """

    def __init__(self, weights=None, engine=None, backend: str = "auto", device: str = "auto",
                 vis_threshold: float = DEFAULT_VIS_THRESHOLD, decoder: str = "auto", detector=None, **options):
        from runtime.detector import Detector

        self._calls = threading.Condition()   # infer calls in flight; release waits for them
        self._in_flight = 0
        self.vis_threshold = check_probability("vis_threshold", vis_threshold)
        self.detector = detector or Detector.from_options(weights=weights, engine=engine, backend=backend,
                                                          device=device, **options)
        try:
            self.decoder = resolve_decoder(decoder, self.detector.device, self.detector.backend.precision)
        except BaseException:
            self.detector.close()
            raise

    def infer(self, image_base64: str, name: str | None = None) -> str:
        """One base64 image (``data:image/...;base64,`` prefix allowed) → its JSON record as a string.

        ``name`` goes into the record's ``"image"`` field (null when not given).
        """
        with self._in_use() as detector:
            data = base64_bytes(image_base64, max_pixels=detector.max_pixels)
            bgr = decode_for(data, self.decoder, detector.device, "base64 input", detector.max_pixels)
            dets = detector.detect_arrays([bgr])[0]
        return to_json(report(name, bgr.shape[1], bgr.shape[0], dets, self.vis_threshold).record)

    def video(self, source: str, every: int = 1, timeout_s: float | None = None):
        """The JSON records (strings) of a video's detected frames, as they are done: ``source`` is a video file, a
        stream URL or a camera index; every ``every``-th frame; ``timeout_s`` for a stalled source (default
        :data:`runtime.video.DEFAULT_TIMEOUT_S`). The record is :func:`runtime.video.frame_record`'s. A damaged or
        stalled source raises RetinaFaceError after its last good frame."""
        from runtime.video import DEFAULT_TIMEOUT_S, detect_video, frame_record

        with self._in_use() as detector:        # a release waits until the video is read or the iterator closed
            for item in detect_video(detector, source, every, vis_threshold=self.vis_threshold,
                                     timeout_s=timeout_s or DEFAULT_TIMEOUT_S):
                yield to_json(frame_record(source, item))

    def release(self) -> None:
        """Free the model and all GPU memory it held, once the ``infer`` calls in flight have returned and the
        ``video`` iterators in use are exhausted or closed (later calls raise RetinaFaceError). Safe to call twice,
        and from any thread."""
        with self._calls:
            detector, self.detector = self.detector, None
            self._calls.wait_for(lambda: self._in_flight == 0)
        if detector is not None:
            detector.close()

    @contextlib.contextmanager
    def _in_use(self):
        """The detector, kept open until the block ends; RetinaFaceError once the Engine is released."""
        with self._calls:
            detector = self.detector
            if detector is None:
                raise RetinaFaceError("this Engine was released; create a new one")
            self._in_flight += 1
        try:
            yield detector
        finally:
            with self._calls:
                self._in_flight -= 1
                self._calls.notify_all()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
