"""The detection record's accessors, on NumPy arrays and torch tensors, one image or a batch."""

import numpy as np
import torch

from retinaface_trt import detections


def _rows(n: int) -> np.ndarray:
    return np.arange(n * detections.WIDTH, dtype=np.float32).reshape(n, detections.WIDTH)


def test_the_parts_are_the_documented_columns_and_views():
    dets = _rows(3)
    assert detections.boxes(dets).tolist() == dets[:, 0:4].tolist()
    assert detections.scores(dets).tolist() == [4.0, 19.0, 34.0]
    assert detections.landmark_points(dets)[1, 4].tolist() == [28.0, 29.0]
    assert np.shares_memory(detections.landmarks(dets), dets)
    assert list(detections.COORDINATES) == [0, 1, 2, 3] + list(range(5, 15))


def test_joined_parts_give_the_rows_back_for_numpy_and_torch_batches():
    dets = _rows(6).reshape(2, 3, detections.WIDTH)
    for xp, array in ((np, dets), (torch, torch.from_numpy(dets))):
        joined = detections.join(detections.boxes(array), detections.scores(array), detections.landmarks(array), xp)
        assert joined.shape == array.shape and (joined == array).all()


def test_filters_keep_order_and_the_sort_is_stable():
    dets = np.zeros((4, detections.WIDTH), np.float32)
    dets[:, detections.SCORE] = [0.5, 0.9, 0.5, 0.2]
    dets[:, 0] = [0, 1, 2, 3]
    assert detections.at_least(dets, 0.5)[:, 0].tolist() == [0, 1, 2]
    assert detections.above(dets, 0.5)[:, 0].tolist() == [1]
    assert detections.by_score(dets)[:, 0].tolist() == [1, 0, 2, 3]
