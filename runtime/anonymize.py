"""Anonymised copies: every reported face hidden, nothing else changed.

A face's region is its box enlarged by ``margin`` times its width on the left and right and times its height
above and below (the box alone leaves hair, ears and chin), rounded outwards to whole pixels and clipped to
the image. Only the pixels inside these regions change:

* ``blur``: a Gaussian blur of the region alone (its own pixels, mirrored at its edges), with a kernel of half
  the region's smaller side and a standard deviation of a quarter of the kernel, so that a face is blurred alike
  whatever its size;
* ``pixelate``: the region averaged into blocks (about 10 across its smaller side);
* ``fill``: the region painted black.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retinaface_trt.errors import RetinaFaceError

METHODS = ("blur", "pixelate", "fill")
DEFAULT_MARGIN = 0.2
BLOCKS = 10          # pixelate: blocks across the region's smaller side


@dataclass(frozen=True)
class AnonymizeSettings:
    """method: one of :data:`METHODS`; margin: the enlargement, a fraction of the box's size per side (≥ 0)."""

    method: str = "blur"
    margin: float = DEFAULT_MARGIN

    def __post_init__(self):
        if self.method not in METHODS:
            raise RetinaFaceError(f"unknown anonymisation {self.method!r}; expected one of: {', '.join(METHODS)}")
        if not (isinstance(self.margin, (int, float)) and 0 <= self.margin <= 10):
            raise RetinaFaceError(f"the anonymisation margin must be a number in 0..10, found {self.margin!r}")


def regions(boxes, width: int, height: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Boxes float [K, 4] (x1, y1, x2, y2) → the enlarged regions int [K, 4] (x1, y1, x2, y2), end exclusive,
    clipped to a ``width``×``height`` image; empty ones (a box outside the image) have x2 ≤ x1 or y2 ≤ y1."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1) * margin
    grown = boxes + size * np.array([-1, -1, 1, 1])
    low = np.floor(grown[:, :2]).clip(0, [width, height])
    high = np.ceil(grown[:, 2:]).clip(0, [width, height])
    return np.concatenate([low, high], axis=1).astype(np.int64)


def anonymized(bgr: np.ndarray, boxes, settings: AnonymizeSettings = AnonymizeSettings()) -> np.ndarray:
    """A copy of BGR uint8 [H, W, 3] with the regions of ``boxes`` (float [K, 4], image pixels) hidden."""
    out = bgr.copy()
    for x1, y1, x2, y2 in regions(boxes, bgr.shape[1], bgr.shape[0], settings.margin).tolist():
        if x2 > x1 and y2 > y1:
            out[y1:y2, x1:x2] = _hidden(out[y1:y2, x1:x2], settings.method)
    return out


def _hidden(region: np.ndarray, method: str) -> np.ndarray:
    import cv2

    height, width = region.shape[:2]
    if method == "fill":
        return np.zeros_like(region)
    if method == "pixelate":
        block = max(1, min(height, width) // BLOCKS)        # block side in pixels
        small = cv2.resize(region, (-(-width // block), -(-height // block)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    kernel = max(3, min(height, width) // 2) | 1          # odd, half the region's smaller side
    return cv2.GaussianBlur(np.ascontiguousarray(region), (kernel, kernel), kernel / 4, borderType=cv2.BORDER_REFLECT)
