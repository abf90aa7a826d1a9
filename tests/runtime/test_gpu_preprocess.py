"""The device resize against cv2.resize(INTER_LINEAR), and the network input layout."""

import cv2
import numpy as np
import pytest
import torch

from runtime.gpu_preprocess import network_input, resize_linear_u8


@pytest.fixture(scope="module")
def crowd(shared_dir):
    return cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))


@pytest.mark.parametrize("size", [(640, 640), (320, 240), (1280, 960)])
def test_resize_within_one_grey_level_of_cv2(crowd, size):
    expected = cv2.resize(crowd, size, interpolation=cv2.INTER_LINEAR).astype(int)
    got = resize_linear_u8(torch.from_numpy(crowd)[None], *size)[0].numpy().astype(int)
    diff = np.abs(got - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_exact_half_size_equals_cv2(crowd):
    expected = cv2.resize(crowd, (512, 312), interpolation=cv2.INTER_LINEAR)
    got = resize_linear_u8(torch.from_numpy(crowd)[None], 512, 312)[0].numpy()
    assert np.array_equal(got, expected)


def test_network_input_is_bgr_minus_mean_nchw(crowd):
    x = network_input(torch.from_numpy(crowd[:8, :8])[None])
    expected = crowd[:8, :8].astype(np.float32) - np.float32([104, 117, 123])
    assert x.shape == (1, 3, 8, 8) and np.array_equal(x[0].permute(1, 2, 0).numpy(), expected)
