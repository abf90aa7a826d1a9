"""Result types shared by every backend, the CLI and the SDK."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
