"""The detection pipeline on top of any backend: BGR image → faces in original image pixels.

Steps: check/convert the image (:mod:`runtime.image_io`) → resize policy (:mod:`runtime.preprocess`) →
minus mean → backend → priors for the input size (cached) → :func:`runtime.postprocess.detect_faces`
→ back to original pixels. Post-processing runs in torch on the backend's device.
"""

from __future__ import annotations

from itertools import groupby

import numpy as np

from retinaface_trt.errors import RetinaFaceError
from runtime import preprocess
from runtime.image_io import to_bgr8
from runtime.options import DEFAULT_MAX_PIXELS, DetectionOptions, check_resize
from runtime.postprocess import detect_faces
from runtime.face import Face


class Detector:
    """detect.py-style face detection with a backend from :mod:`runtime.backends`.

    resize:     ``original`` (detect.py), ``stretch`` or ``letterbox`` (see :mod:`runtime.preprocess`)
    input_size: (W, H) of the network input for ``stretch`` / ``letterbox``; default (640, 640)
    confidence_threshold 0.02, nms_threshold 0.4, top_k 5000, keep_top_k 750: detect.py's defaults
    max_pixels: images with more pixels are refused (RetinaFaceError); 0 disables the limit
    """

    def __init__(self, backend, *, resize: str = "original", input_size=(640, 640),
                 confidence_threshold: float = 0.02, nms_threshold: float = 0.4, top_k: int = 5000,
                 keep_top_k: int = 750, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.backend = backend
        self.resize = check_resize(resize)
        self.input_size = tuple(int(v) for v in input_size)
        self.options = DetectionOptions(float(confidence_threshold), int(top_k), float(nms_threshold),
                                        int(keep_top_k))
        self.max_pixels = int(max_pixels)
        self._check_fixed_size()

    @classmethod
    def from_options(cls, weights=None, engine=None, backend: str = "auto", device: str | None = "cpu",
                     precision: str = "fp32", engine_cache=None, **options) -> "Detector":
        """Build the backend (:func:`runtime.backends.create_backend`) and a Detector over it.

        ``precision`` ("fp32"/"fp16") and ``engine_cache`` go to the backend; ``options`` to the Detector.
        """
        from runtime.backends import create_backend

        if weights is None and engine is None:
            raise RetinaFaceError("no model given: pass weights (.pth/.wts) or a TensorRT engine")
        backend = create_backend(backend, weights=weights, engine=engine, device=device, precision=precision,
                                 input_size=options.get("input_size", (640, 640)), engine_cache=engine_cache)
        try:
            return cls(backend, **options)
        except BaseException:
            backend.close()
            raise

    def detect(self, bgr: np.ndarray) -> list[Face]:
        """All kept detections of one BGR uint8 [H, W, 3] image (gray/BGRA/16-bit are converted), by score."""
        return self.detect_batch([bgr])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """:meth:`detect` for several images, of any sizes; images sharing a network size run as one batch."""
        if self.backend is None:
            raise RetinaFaceError("this detector was closed; create a new one")
        prepared = [self._prepare(image, f"image {i}") for i, image in enumerate(images)]
        results: list[list[Face]] = [[] for _ in images]
        by_shape = sorted(range(len(images)), key=lambda i: prepared[i][0].shape)
        for _, group in groupby(by_shape, key=lambda i: prepared[i][0].shape):
            group = list(group)
            for index, faces in zip(group, self._run([prepared[i] for i in group])):
                results[index] = faces
        return results

    def close(self) -> None:
        """Release the backend (and the GPU memory it holds). Safe to call twice."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _prepare(self, image, source: str):
        if not isinstance(image, np.ndarray):
            raise RetinaFaceError(f"{source}: expected a numpy array (BGR uint8 [H, W, 3]), "
                                  f"got {type(image).__name__}")
        return preprocess.resize_image(to_bgr8(image, source, self.max_pixels), self.resize, self.input_size)

    def _run(self, prepared) -> list[list[Face]]:
        from runtime.priors import prior_tensor

        batch = preprocess.to_network_input([net for net, _ in prepared], self.backend.device)
        height, width = batch.shape[2:]
        self._check_input(width, height)
        loc, conf, landms = self.backend.infer(batch)
        priors = prior_tensor(self.backend.cfg, height, width, self.backend.device)
        return [_faces(detect_faces(loc[i], conf[i], landms[i], priors, width, height, self.options,
                                    self.backend.cfg.variance), transform)
                for i, (_, transform) in enumerate(prepared)]

    def _check_fixed_size(self) -> None:
        fixed = getattr(self.backend, "fixed_input_size", None)
        if fixed is not None and self.resize != "original" and tuple(fixed) != self.input_size:
            raise RetinaFaceError(f"the {self.backend.name} engine takes {fixed[0]}x{fixed[1]} inputs, but "
                                  f"input size {self.input_size[0]}x{self.input_size[1]} was asked for; "
                                  f"pass --input-size {fixed[0]}x{fixed[1]}")

    def _check_input(self, width: int, height: int) -> None:
        fixed = getattr(self.backend, "fixed_input_size", None)
        if fixed is not None and tuple(fixed) != (width, height):
            raise RetinaFaceError(f"the {self.backend.name} engine takes {fixed[0]}x{fixed[1]} inputs, got a "
                                  f"{width}x{height} image with resize 'original'; use --resize stretch or letterbox")


def _faces(dets, transform: preprocess.Transform) -> list[Face]:
    """Detections float32 [K, 15] in network pixels → Faces in original pixels (same order)."""
    dets = dets.detach().cpu().numpy()
    boxes = transform.boxes_to_original(dets[:, :4])
    points = transform.boxes_to_original(dets[:, 5:15]).reshape(-1, 5, 2)
    return [Face(box=tuple(float(v) for v in box), score=float(score), landmarks=landmarks)
            for box, score, landmarks in zip(boxes, dets[:, 4], points)]
