"""The JSON record of one image, shared by the CLI (``--json``) and the SDK (``Engine.infer``).

Record: ``{"image": <name or null>, "width": W, "height": H, "faces": [Face.to_dict(), ...]}`` with only the
faces whose score is ≥ ``vis_threshold``, sorted by score descending; coordinates are float pixels of the
original image. A CLI input that failed gives ``{"image": ..., "width": null, "height": null, "faces": [],
"error": "<message>"}``.
"""

from __future__ import annotations

import json

from runtime.types import Face

DEFAULT_VIS_THRESHOLD = 0.6  # detect.py draws faces with score >= 0.6


def visible(faces: list[Face], vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> list[Face]:
    """The faces with score ≥ ``vis_threshold``, by score descending."""
    return sorted((f for f in faces if f.score >= vis_threshold), key=lambda f: -f.score)


def image_record(image, width: int, height: int, faces: list[Face],
                 vis_threshold: float = DEFAULT_VIS_THRESHOLD) -> dict:
    """The record of one processed image (see the module docstring)."""
    return {"image": image, "width": int(width), "height": int(height),
            "faces": [face.to_dict() for face in visible(faces, vis_threshold)]}


def error_record(image, message: str) -> dict:
    """The record of an input that could not be processed."""
    return {"image": image, "width": None, "height": None, "faces": [], "error": message}


def to_json(value, indent: int | None = None) -> str:
    """Serialise records; NaN/inf are refused (they are not JSON)."""
    return json.dumps(value, indent=indent, allow_nan=False)
