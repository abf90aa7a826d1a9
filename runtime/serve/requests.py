"""What a ``POST /v1/detect`` may carry, checked into a :class:`DetectRequest` (no ASGI imports).

Two bodies are accepted:

* ``Content-Type: application/json``: ``{"image": "<base64, or a data:image/...;base64, URL>",
  "name": optional str, "vis_threshold": ..., "confidence_threshold": ..., "keep_top_k": ...}``;
* ``Content-Type: image/*`` (``image/jpeg``, ``image/png``, ...) or ``application/octet-stream``: the encoded
  image itself, with the same optional fields as query parameters (``?vis_threshold=0.5&name=a.jpg``).

The optional fields change only what can be derived exactly from the detections the server computed:
``vis_threshold`` (any value in [0, 1]), a higher ``confidence_threshold`` (faces scoring above it are
the same whatever lower threshold ran first, since NMS only lets a box be removed by a higher-scoring one)
and a lower ``keep_top_k`` (a prefix of the kept list). ``nms_threshold`` and ``top_k`` are fixed when the
server starts. Every problem is a :class:`RequestError`: one line and the HTTP status to answer with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt import detections
from runtime.options import check_count, check_probability

JSON_TYPE = "application/json"
BYTES_TYPE = "application/octet-stream"
OPTIONAL_FIELDS = ("name", "vis_threshold", "confidence_threshold", "keep_top_k")
FIXED_FIELDS = {"nms_threshold": "--nms-threshold", "top_k": "--top-k"}
EXAMPLE = '{"image": "<base64 or data:image/...;base64,...>"}'


class RequestError(RetinaFaceError):
    """A request the service refuses: ``status`` (400, 413, 415, ...) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Overrides:
    """A request's thresholds (see the module docstring); defaults are the server's own."""

    vis_threshold: float
    confidence_threshold: float
    keep_top_k: int

    def select(self, dets: np.ndarray) -> np.ndarray:
        """The detections [K, 15] a detector run with these thresholds keeps, from the detector's own, looser,
        detections (by score); the vis threshold is applied after, by :func:`runtime.face.report`."""
        return detections.above(dets, self.confidence_threshold)[:self.keep_top_k]


@dataclass(frozen=True)
class DetectRequest:
    """One checked request: the image as base64 text or encoded bytes, its name and thresholds."""

    image: str | bytes
    name: str | None
    overrides: Overrides

    def decode(self, max_pixels: int) -> np.ndarray:
        """The image as BGR uint8 [H, W, 3] (:mod:`runtime.image_io`; RetinaFaceError with the SDK's line)."""
        from runtime.image_io import decode_base64, decode_image

        if isinstance(self.image, bytes):
            return decode_image(self.image, source="request body", max_pixels=max_pixels)
        return decode_base64(self.image, max_pixels=max_pixels)


def media_type(content_type: str | None) -> str:
    """``"image/jpeg; q=1"`` → ``"image/jpeg"``; RequestError 415 for a type the service does not take."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == JSON_TYPE or kind == BYTES_TYPE or kind.startswith("image/"):
        return kind
    raise RequestError(415, f"unsupported Content-Type {content_type or '(none)'!r}; send {JSON_TYPE} "
                            f"with {EXAMPLE}, or the image itself as image/jpeg, image/png, ... or {BYTES_TYPE}")


def parse_json(body: bytes, settings) -> DetectRequest:
    """A JSON body → DetectRequest; ``settings`` is the server's :class:`runtime.serve.settings.ServeSettings`."""
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"the body is not valid JSON ({error}); expected {EXAMPLE}") from None
    if not isinstance(record, dict):
        raise RequestError(400, f"expected a JSON object such as {EXAMPLE}, found {type(record).__name__}")
    if "image" not in record:
        raise RequestError(400, f'the JSON body has no "image" field; expected {EXAMPLE}')
    fields = {key: value for key, value in record.items() if key != "image"}
    return DetectRequest(record["image"], _name(fields.get("name")), overrides(fields, settings))


def parse_image(body: bytes, query: Mapping[str, str], settings) -> DetectRequest:
    """An encoded-image body with its query parameters → DetectRequest."""
    return DetectRequest(bytes(body), _name(query.get("name")), overrides(query, settings))


def overrides(fields: Mapping, settings) -> Overrides:
    """Check a request's optional fields against the server's settings; RequestError 400 if one is wrong."""
    _check_known(fields)
    server = settings.detection
    try:
        result = Overrides(
            check_probability("vis_threshold", fields.get("vis_threshold", settings.vis_threshold)),
            check_probability("confidence_threshold",
                              fields.get("confidence_threshold", server.confidence_threshold)),
            check_count("keep_top_k", fields.get("keep_top_k", server.keep_top_k)))
    except RetinaFaceError as error:
        raise RequestError(400, str(error)) from None
    _check_within(result, server)
    return result


def _check_known(fields: Mapping) -> None:
    for key in fields:
        if key in FIXED_FIELDS:
            raise RequestError(400, f"{key} is fixed when the server starts ({FIXED_FIELDS[key]}); leave it out")
        if key not in OPTIONAL_FIELDS:
            raise RequestError(400, f"unknown field {key!r}; expected image and optionally "
                                    f"{', '.join(OPTIONAL_FIELDS)}")


def _check_within(result: Overrides, server) -> None:
    if result.confidence_threshold < server.confidence_threshold:
        raise RequestError(400, f"confidence_threshold must be ≥ {server.confidence_threshold}, the server's "
                                f"--confidence-threshold, found {result.confidence_threshold}; start the "
                                "server with a lower --confidence-threshold")
    if result.keep_top_k > server.keep_top_k:
        raise RequestError(400, f"keep_top_k must be ≤ {server.keep_top_k}, the server's --keep-top-k, found "
                                f"{result.keep_top_k}; start the server with a higher --keep-top-k")


def _name(value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RequestError(400, f"name must be a string, found {type(value).__name__}")
    return value
