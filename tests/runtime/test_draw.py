"""Annotated copies: a face's score label stays inside the image at every edge."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.draw import FONT, FONT_SCALE, TEXT_COLOUR, draw_faces, label_origin
from runtime.face import Face


def test_a_label_inside_the_image_is_where_detect_py_puts_it():
    assert label_origin("0.9979", 70, 80, (624, 1024, 3)) == (70, 92)


@pytest.mark.parametrize("x1, y1", [(40, -20), (40, 0), (-15, 40), (190, 40), (40, 195)])
def test_a_label_at_an_edge_is_drawn_whole(x1, y1):
    """The whole label's white pixels are in the image: as many as the same label drawn in the middle."""
    face = Face(box=(x1, y1, x1 + 30, y1 + 30), score=0.9979, landmarks=np.full((5, 2), -100.0))
    canvas = draw_faces(np.zeros((200, 200, 3), np.uint8), [face])
    reference = np.zeros((200, 200, 3), np.uint8)
    cv2.putText(reference, "0.9979", (60, 100), FONT, FONT_SCALE, TEXT_COLOUR)
    white = (canvas == 255).all(axis=2).sum()
    assert white == (reference == 255).all(axis=2).sum() > 0
