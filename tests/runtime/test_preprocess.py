"""Resize policies: the stored reference input, letterbox padding, and mapping back to original pixels."""

from __future__ import annotations

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.preprocess import Transform, resize_image, to_network_input


def test_stretch_input_equals_reference_input(crowd_image, crowd_reference):
    net, _ = resize_image(crowd_image, "stretch", (640, 640))
    batch = to_network_input([net]).numpy()
    np.testing.assert_array_equal(batch, crowd_reference["input_640x640_bgr_minus_mean"])


def test_original_keeps_image_and_identity_transform(crowd_image):
    net, transform = resize_image(crowd_image, "original", (640, 640))
    assert net is crowd_image and transform == Transform()


def test_letterbox_padding_is_zero_after_mean():
    image = np.full((100, 200, 3), 250, np.uint8)
    net, transform = resize_image(image, "letterbox", (64, 64))
    batch = to_network_input([net])[0].numpy()
    assert transform.offset_y == 16 and transform.offset_x == 0
    assert np.all(batch[:, :16] == 0) and np.all(batch[:, 48:] == 0)
    assert np.all(batch[:, 16:48] != 0)


@pytest.mark.parametrize("policy", ["stretch", "letterbox"])
def test_mapping_round_trip(policy):
    """A point at known original pixels, placed through the policy's geometry, maps back to itself."""
    image = np.zeros((300, 500, 3), np.uint8)
    _, transform = resize_image(image, policy, (160, 120))
    original = np.array([[10.0, 20.0, 480.0, 290.0]], dtype=np.float32)
    net = np.empty_like(original)
    net[:, 0::2] = original[:, 0::2] / transform.scale_x + transform.offset_x
    net[:, 1::2] = original[:, 1::2] / transform.scale_y + transform.offset_y
    np.testing.assert_allclose(transform.boxes_to_original(net), original, rtol=1e-5)


def test_stretch_scale_is_original_over_input():
    _, transform = resize_image(np.zeros((624, 1024, 3), np.uint8), "stretch", (640, 640))
    assert (transform.scale_x, transform.scale_y) == (1024 / 640, 624 / 640)


def test_letterbox_keeps_aspect_within_a_pixel():
    _, transform = resize_image(np.zeros((300, 500, 3), np.uint8), "letterbox", (160, 120))
    assert abs(transform.scale_x - transform.scale_y) < transform.scale_x / 90


def test_unknown_policy_is_refused():
    with pytest.raises(RetinaFaceError, match="letterbox"):
        resize_image(np.zeros((4, 4, 3), np.uint8), "crop", (4, 4))

