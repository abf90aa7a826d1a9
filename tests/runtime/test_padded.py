"""``--resize padded``: images at their own size on a few canvas sizes, padded with the mean; how its faces compare
with ``original``'s (detect.py's) on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from runtime.preprocess import CANVAS_SIDES, MEAN_BGR, canvas_side, layout, place


def test_canvas_sides_hold_the_image_and_are_few():
    for side in range(1, 9000, 7):
        canvas = canvas_side(side)
        assert canvas >= side and canvas % 32 == 0
        assert side <= 256 or canvas <= 1.25 * side + 32            # at most a quarter (plus rounding) wasted
    assert len({canvas_side(s) for s in range(300, 1401)}) == 10     # photos of 300 to 1400 px: 10 sides
    assert all(b > a for a, b in zip(CANVAS_SIDES, CANVAS_SIDES[1:]))


def test_padded_places_the_image_top_left_and_fills_the_rest_with_the_mean():
    image = torch.randint(0, 256, (2, 50, 70, 3), dtype=torch.uint8)
    plan = layout((70, 50), "padded", (640, 640))
    assert plan.canvas == (128, 64) and plan.transform.scale_x == 1 and plan.transform.offset_x == 0
    canvas = place(image, plan)
    assert canvas.shape == (2, 64, 128, 3) and torch.equal(canvas[:, :50, :70], image)
    mean = torch.tensor(MEAN_BGR, dtype=torch.uint8)
    assert torch.equal(canvas[:, 50:], mean.expand(2, 14, 128, 3)) and torch.equal(canvas[:, :, 70:],
                                                                                    mean.expand(2, 64, 58, 3))


EDGE = 96     # three steps of the network's coarsest stride (32 px)


def _iou(box, boxes):
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])   # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


@pytest.mark.parametrize("name, canvas", [("crowd_1024x624.jpg", (1024, 640)), ("selfie_1600x898.jpg", (1792, 1024))])
def test_padded_finds_the_faces_of_original_on_real_photos(mnet_pth, shared_dir, name, canvas):
    """The network sees the mean (zeros) beyond the image where ``original`` sees its own zero padding, so the
    features near the right and bottom edges differ: there faces move, appear or vanish (on the selfie, 5 of 364
    within 80 px of the right edge). Away from those edges (boxes ending ``EDGE`` px or more before them) the
    faces reported (score ≥ 0.6) are the same ones: each face of either mode has one of the other at IoU ≥ 0.9.
    (AP on the 200 WIDER images of the shared subset: docs/detection.md.)"""
    from runtime.backends.executor import ExecutorBackend
    from runtime.detector import Detector

    image = cv2.imread(str(shared_dir / "images" / name))
    backend = ExecutorBackend(str(mnet_pth), device="cpu")
    exact = Detector(backend, resize="original").detect_arrays([image])[0]
    padded = Detector(backend, resize="padded").detect_arrays([image])[0]
    assert layout((image.shape[1], image.shape[0]), "padded", (640, 640)).canvas == canvas
    exact, padded = exact[exact[:, 4] >= 0.6], padded[padded[:, 4] >= 0.6]
    assert len(exact) >= 20
    height, width = image.shape[:2]
    for ours, theirs in ((exact, padded), (padded, exact)):
        inside = ours[(ours[:, 2] <= width - EDGE) & (ours[:, 3] <= height - EDGE)]
        assert len(inside) >= 0.8 * len(ours)
        assert all(_iou(face, theirs).max() >= 0.9 for face in inside)
