"""Detected faces and their JSON records, shared by every backend, the CLI and the SDK.

A :class:`Face` is in pixels of the original image. The JSON record of one image (CLI ``--json``, SDK
``Engine.infer``, the service, jobs) is ``{"image": <name or null>, "width": W, "height": H, "faces":
[Face.to_dict(), ...]}`` with only the faces whose score is ≥ ``vis_threshold``, sorted by score descending.
A CLI input that failed gives ``{"image": ..., "width": null, "height": null, "faces": [], "error": "<message>"}``.

Detections arrive as rows of :mod:`retinaface_trt.detections`; :func:`report` is the one step from them to
the record (the vis threshold is applied there, once; the record is made from the array at once, and Face
objects only when asked for, for the faces reported).

Records become text with :func:`to_json`: compact JSON (no spaces) written by orjson, whose float formatting
(the shortest text that reads back as the same float, as Python's ``repr``) is about 15 times faster than the
standard library's for a crowd's record (0.03 against 0.5 ms for 51 faces on the development machine): on a
GPU that was a quarter of an SDK call. Non-finite numbers have no JSON form; orjson would write them as
``null``, so they are refused where a record is made from an array (:func:`array_record`), and by
:func:`to_json` whatever made the value: a text holding ``null`` (an error record's width, or a NaN) is checked
again by the standard library, which refuses NaN; the standard library also writes indented files and a record
whose strings orjson refuses (an undecodable file name, held as lone surrogates, is written ``\udcff``-escaped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import orjson

from retinaface_trt.errors import RetinaFaceError
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


def array_record(image, width: int, height: int, rows: np.ndarray) -> dict:
    """:func:`image_record` of ``faces_from_array(rows)``, the same dict, made from reported rows [K, 15]
    (:func:`reported_rows`) at once: one ``tolist``, no :class:`Face` per face."""
    rows = np.asarray(rows, dtype=np.float32).astype(np.float64)      # the Python floats Face holds
    if not np.isfinite(rows).all():
        raise RetinaFaceError(NOT_FINITE)
    boxes = detections.boxes(rows)
    boxes[:, 2:] -= boxes[:, :2]                                        # x2, y2 → w, h (a view: rows change)
    faces = [{"score": score, "box": dict(zip("xywh", box)),
              "landmarks": [{"id": i, "x": x, "y": y} for i, (x, y) in enumerate(points)]}
             for box, score, points in zip(boxes.tolist(), detections.scores(rows).tolist(),
                                           detections.landmark_points(rows).tolist())]
    return {"image": image, "width": int(width), "height": int(height), "faces": faces}


class Report:
    """What is reported of one image: its ``record``, the detection ``rows`` [K, 15] of its reported faces, and
    those ``faces`` (made on first use: the records need none)."""

    __slots__ = ("record", "rows", "_faces")

    def __init__(self, record: dict, rows: np.ndarray):
        self.record, self.rows, self._faces = record, rows, None

    @property
    def faces(self) -> list[Face]:
        if self._faces is None:
            self._faces = faces_from_array(self.rows)
        return self._faces


def report(image, width: int, height: int, dets: np.ndarray,
           vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> Report:
    """Detections → the image's :class:`Report`: the one step from a detector's arrays to what the SDK, the
    service, jobs and videos report (``image`` is the record's name, ``width`` × ``height`` the image)."""
    rows = reported_rows(dets, vis_threshold)
    return Report(array_record(image, width, height, rows), rows)


def error_record(image, message: str) -> dict:
    """The record of an input that could not be processed."""
    return {"image": image, "width": None, "height": None, "faces": [], "error": message}


NOT_FINITE = ("the detections hold values that are not finite (infinity or NaN): the network overflowed float32, "
              "so its weights are out of range; check the weights file")


def to_json(value, indent: int | None = None) -> str:
    """Serialise records: compact JSON by orjson (``indent`` None), or the standard library's indented text;
    NaN/inf are refused with a RetinaFaceError (see the module doc)."""
    if indent is None:
        try:
            text = orjson.dumps(value)
        except orjson.JSONEncodeError:        # a string that is not UTF-8 (lone surrogates): escaped as below
            return _standard_json(value, indent)
        if b"null" in text:                   # orjson's NaN/inf, or a real null: the standard library tells
            _standard_json(value, indent)
        return text.decode()
    return _standard_json(value, indent)


def _standard_json(value, indent: int | None) -> str:
    """The standard library's text of ``value`` (compact for ``indent`` None); NaN/inf refused."""
    try:
        return json.dumps(value, indent=indent, allow_nan=False, separators=None if indent else (",", ":"))
    except ValueError:
        raise RetinaFaceError(NOT_FINITE) from None
