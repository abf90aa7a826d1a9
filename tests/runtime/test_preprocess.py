"""Resize policies: the stored reference input, letterbox padding, and mapping back to original pixels."""

from __future__ import annotations

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
import torch

from runtime.preprocess import (Transform, layout, network_input, place, resize_image, resize_linear_emulated,
                                resize_linear_u8, to_network_input)


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



@pytest.fixture(scope="module")
def crowd(shared_dir):
    import cv2

    return cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))


@pytest.mark.parametrize("size", [(640, 640), (320, 240), (1280, 960), (517, 333), (1024, 1000), (1, 1)])
def test_device_resize_equals_cv2(crowd, size):
    """Down- and up-scaling on each axis (624 → 640 rows is where OpenCV's row borders keep their weights)."""
    import cv2

    expected = cv2.resize(crowd, size, interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_linear_emulated(torch.from_numpy(crowd)[None], *size)[0].numpy(), expected)


def test_device_resize_equals_cv2_on_random_sizes():
    import cv2

    rng = np.random.default_rng(7)
    for _ in range(60):
        image = rng.integers(0, 256, (*rng.integers(1, 40, 2), 3), dtype=np.uint8)
        width, height = (int(v) for v in rng.integers(1, 90, 2))
        expected = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        got = resize_linear_emulated(torch.from_numpy(image)[None], width, height)[0].numpy()
        assert np.array_equal(got, expected), (image.shape, width, height)


def test_device_exact_half_size_equals_cv2(crowd):
    import cv2

    expected = cv2.resize(crowd, (512, 312), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_linear_emulated(torch.from_numpy(crowd)[None], 512, 312)[0].numpy(), expected)


def test_host_resize_is_opencv_itself(crowd):
    import cv2

    expected = cv2.resize(crowd, (517, 333), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_linear_u8(torch.from_numpy(crowd)[None], 517, 333)[0].numpy(), expected)


def test_network_input_is_bgr_minus_mean_nchw(crowd):
    x = network_input(torch.from_numpy(crowd[:8, :8])[None])
    expected = crowd[:8, :8].astype(np.float32) - np.float32([104, 117, 123])
    assert x.shape == (1, 3, 8, 8) and np.array_equal(x[0].permute(1, 2, 0).numpy(), expected)


def test_network_input_channels_last_and_float16_keep_values(crowd):
    x = network_input(torch.from_numpy(crowd[:8, :8])[None], torch.float16, channels_last=True)
    assert x.dtype == torch.float16 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.float(), network_input(torch.from_numpy(crowd[:8, :8])[None]))


@pytest.mark.parametrize("policy", ["original", "stretch", "letterbox"])
def test_place_on_a_batch_equals_the_host_policy_per_image(crowd, policy):
    plan = layout((crowd.shape[1], crowd.shape[0]), policy, (320, 256))
    batch = torch.from_numpy(np.stack([crowd, crowd[::-1].copy()]))
    placed = place(batch, plan).numpy()
    for i, image in enumerate((crowd, crowd[::-1].copy())):
        expected, transform = resize_image(image, policy, (320, 256))
        assert np.array_equal(placed[i], expected) and transform == plan.transform


def test_detections_to_original_maps_boxes_and_points_not_scores():
    transform = Transform(2.0, 3.0, 10.0, 20.0)
    dets = np.float32([[12, 22, 14, 24, 0.9, 12, 22, 13, 23, 14, 24, 15, 25, 16, 26]])
    out = transform.detections_to_original(dets)
    assert out[0, 4] == np.float32(0.9)
    np.testing.assert_array_equal(out[0, :4], [4, 6, 8, 12])
    np.testing.assert_array_equal(out[0, 5:7], [4, 6])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_resize_equals_the_emulation_on_the_cpu(crowd):
    images = torch.from_numpy(crowd)[None]
    assert torch.equal(resize_linear_u8(images.cuda(), 640, 640).cpu(), resize_linear_emulated(images, 640, 640))
