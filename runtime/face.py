"""Detected faces and their JSON records, shared by every backend, the CLI and the SDK.

A :class:`Face` is in pixels of the original image. The JSON record of one image (CLI ``--json``, SDK
``Engine.infer``, the service, jobs) is ``{"image": <name or null>, "width": W, "height": H, "faces":
[Face.to_dict(), ...]}`` with only the faces whose score is ≥ ``vis_threshold``, sorted by score descending.
A CLI input that failed gives ``{"image": ..., "width": null, "height": null, "faces": [], "error": "<message>"}``.

Detections arrive as rows of :mod:`retinaface_trt.detections`; :func:`report` is the one step from them to
the reported faces and the record (the vis threshold is applied there, once, and Face objects are made only
for the faces reported).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from retinaface_trt import detections
from retinaface_trt.detections import LANDMARK_NAMES  # noqa: F401 - the landmark order, re-exported

DEFAULT_VIS_THRESHOLD = 0.6  # detect.py draws faces with score >= 0.6


@dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the original image.

    box:       (x1, y1, x2, y2), float
    score:     face probability in [0, 1] (``conf[:, 1]`` of the network)
    landmarks: float array [5, 2] of (x, y), in :data:`LANDMARK_NAMES` order
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    def to_dict(self) -> dict:
        """The JSON form: box as x, y, w, h; landmarks as a list of {id, x, y}."""
        x1, y1, x2, y2 = self.box
        return {
            "score": float(self.score),
            "box": {"x": float(x1), "y": float(y1), "w": float(x2 - x1), "h": float(y2 - y1)},
            "landmarks": [{"id": i, "x": float(x), "y": float(y)}
                          for i, (x, y) in enumerate(np.asarray(self.landmarks).reshape(5, 2))],
        }


def faces_from_array(dets: np.ndarray) -> list[Face]:
    """Detections float [K, 15] (:mod:`retinaface_trt.detections` rows) → Faces, in the same order.

    The one conversion from arrays to faces; landmarks are views into ``dets``.
    """
    boxes, scores = detections.boxes(dets).tolist(), detections.scores(dets).tolist()
    points = detections.landmark_points(dets)
    return [Face(tuple(box), score, landmarks) for box, score, landmarks in zip(boxes, scores, points)]


def reported_rows(dets, vis_threshold: float = DEFAULT_VIS_THRESHOLD):
    """The rows of one image's detections [K, 15] scoring ≥ ``vis_threshold``, by score descending (equal
    scores in their order): the vis filter, the one place it is written (arrays stay arrays, for Triton)."""
    return detections.by_score(detections.at_least(dets, vis_threshold))


def reported_faces(dets: np.ndarray, vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> list[Face]:
    """:func:`reported_rows` as Faces."""
    return faces_from_array(reported_rows(dets, vis_threshold))


def image_record(image, width: int, height: int, faces: list[Face]) -> dict:
    """The record of one processed image (see the module docstring); ``faces`` as :func:`reported_faces`
    gives them."""
    return {"image": image, "width": int(width), "height": int(height),
            "faces": [face.to_dict() for face in faces]}


class Report(NamedTuple):
    """What is reported of one image: its ``record``, its ``faces`` and their detection ``rows`` [K, 15]."""

    record: dict
    faces: list[Face]
    rows: np.ndarray


def report(image, width: int, height: int, dets: np.ndarray,
           vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> Report:
    """Detections → the image's :class:`Report`: the one step from a detector's arrays to what the SDK, the
    service, jobs and videos report (``image`` is the record's name, ``width`` × ``height`` the image)."""
    rows = reported_rows(dets, vis_threshold)
    faces = faces_from_array(rows)
    return Report(image_record(image, width, height, faces), faces, rows)


def error_record(image, message: str) -> dict:
    """The record of an input that could not be processed."""
    return {"image": image, "width": None, "height": None, "faces": [], "error": message}


def to_json(value, indent: int | None = None) -> str:
    """Serialise records; NaN/inf are refused (they are not JSON)."""
    return json.dumps(value, indent=indent, allow_nan=False)
