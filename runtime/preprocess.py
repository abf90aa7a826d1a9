"""Resize policies and the network input, as detect.py prepares it.

Conventions:

* Images are BGR ``uint8`` [H, W, 3] (see :mod:`runtime.image_io`); sizes are given as (W, H) in pixels.
* The network input is float32 [N, 3, H, W], BGR, minus the per-channel mean (104, 117, 123); no 1/255
  scaling and no RGB swap (detect.py).
* Policies: ``original`` runs at the image's own size (detect.py's default); ``stretch`` resizes to the
  fixed input size with ``cv2.resize(..., INTER_LINEAR)`` ignoring aspect (the fixed 640×640 engine of the
  deployment notes); ``letterbox`` keeps the aspect ratio, centres the resized image and pads with the mean
  colour, so padded pixels are exactly 0 after mean subtraction.
* A :class:`Transform` maps network-input pixels back to original pixels:
  ``x_orig = (x_net - offset_x) * scale_x`` (likewise for y).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retinaface_trt.errors import RetinaFaceError
from runtime.options import check_resize

MEAN_BGR = (104.0, 117.0, 123.0)


@dataclass(frozen=True)
class Transform:
    """Network-input pixels → original pixels: ``orig = (net - offset) * scale``, per axis."""

    scale_x: float = 1.0
    scale_y: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map float [N, 4] (x1, y1, x2, y2) boxes, or [N, 2k] interleaved (x, y) points, to original pixels."""
        out = np.array(boxes, dtype=np.float32, copy=True)
        out[:, 0::2] = (out[:, 0::2] - self.offset_x) * self.scale_x
        out[:, 1::2] = (out[:, 1::2] - self.offset_y) * self.scale_y
        return out


def resize_image(bgr: np.ndarray, resize: str, input_size: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """Apply a resize policy to BGR uint8 [H, W, 3].

    Returns the network-sized BGR uint8 image and the :class:`Transform` back to ``bgr``'s pixels.
    ``input_size`` is (W, H) and is ignored by ``original``.
    """
    height, width = bgr.shape[:2]
    in_w, in_h = input_size
    if check_resize(resize) == "original":
        return bgr, Transform()
    if resize == "stretch":
        resized = cv2.resize(bgr, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        return resized, Transform(width / in_w, height / in_h)
    return _letterbox(bgr, in_w, in_h)


def _letterbox(bgr: np.ndarray, in_w: int, in_h: int) -> tuple[np.ndarray, Transform]:
    height, width = bgr.shape[:2]
    ratio = min(in_w / width, in_h / height)
    new_w, new_h = max(1, min(in_w, round(width * ratio))), max(1, min(in_h, round(height * ratio)))
    left, top = (in_w - new_w) // 2, (in_h - new_h) // 2
    canvas = np.empty((in_h, in_w, 3), dtype=np.uint8)
    canvas[:] = np.array(MEAN_BGR, dtype=np.uint8)  # becomes exactly 0 after mean subtraction
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, Transform(width / new_w, height / new_h, float(left), float(top))


def to_network_input(images: list[np.ndarray], device="cpu"):
    """Stack same-sized BGR uint8 [H, W, 3] images into float32 [N, 3, H, W] minus the mean, on ``device``.

    The uint8 data is moved first and converted on the device (4× less to copy to a GPU).
    """
    import torch

    batch = torch.from_numpy(np.stack(images)).to(device)
    mean = torch.tensor(MEAN_BGR, dtype=torch.float32, device=batch.device)
    return (batch.float() - mean).permute(0, 3, 1, 2).contiguous()
