"""Detected faces and their JSON records, shared by every backend, the CLI and the SDK.

A :class:`Face` is in pixels of the original image. The JSON record of one image (CLI ``--json``, SDK
``Engine.infer``) is ``{"image": <name or null>, "width": W, "height": H, "faces": [Face.to_dict(), ...]}``
with only the faces whose score is ≥ ``vis_threshold``, sorted by score descending. A CLI input that
failed gives ``{"image": ..., "width": null, "height": null, "faces": [], "error": "<message>"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

DEFAULT_VIS_THRESHOLD = 0.6  # detect.py draws faces with score >= 0.6

# RetinaFace landmark order (image left/right, as the original detect.py documents it).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


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
    """Detections float [K, 15] (x1, y1, x2, y2, score, five (x, y)) → Faces, in the same order.

    The one conversion from arrays to faces; landmarks are views into ``dets``.
    """
    boxes, scores = dets[:, :4].tolist(), dets[:, 4].tolist()
    points = dets[:, 5:15].reshape(-1, 5, 2)
    return [Face(tuple(box), score, landmarks) for box, score, landmarks in zip(boxes, scores, points)]


def visible(faces: list[Face], vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> list[Face]:
    """The faces with score ≥ ``vis_threshold``, by score descending."""
    return sorted((f for f in faces if f.score >= vis_threshold), key=lambda f: -f.score)


def image_record(image, width: int, height: int, faces: list[Face],
                 vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> dict:
    """The record of one processed image (see the module docstring)."""
    return {"image": image, "width": int(width), "height": int(height),
            "faces": [face.to_dict() for face in visible(faces, vis_threshold)]}


def array_record(image, width: int, height: int, dets: np.ndarray,
                 vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> dict:
    """:func:`image_record` of ``faces_from_array(dets)``, the same dict, made from the array [K, 15] at once
    (one ``tolist``, no :class:`Face` per face): the records of ``detect`` and the SDK."""
    rows = np.asarray(dets, dtype=np.float32).astype(np.float64)     # the Python floats Face holds
    rows = rows[rows[:, 4] >= float(vis_threshold)]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]               # as visible(): by score, stable
    rows[:, 2:4] -= rows[:, 0:2]                                                 # x2, y2 → w, h
    return {"image": image, "width": int(width), "height": int(height), "faces": [
        {"score": r[4], "box": {"x": r[0], "y": r[1], "w": r[2], "h": r[3]},
         "landmarks": [{"id": i, "x": r[5 + 2 * i], "y": r[6 + 2 * i]} for i in range(5)]}
        for r in rows.tolist()]}


def error_record(image, message: str) -> dict:
    """The record of an input that could not be processed."""
    return {"image": image, "width": None, "height": None, "faces": [], "error": message}


def to_json(value, indent: int | None = None) -> str:
    """Serialise records; NaN/inf are refused (they are not JSON)."""
    return json.dumps(value, indent=indent, allow_nan=False)
