"""Batched exact greedy NMS and detection post-processing (GPU code, run on CPU tensors)."""

import numpy as np
import pytest
import torch

from runtime.gpu_postprocess import detect_faces_batch, greedy_nms_sorted, iou_matrix_plus_one
from runtime.options import DetectionOptions
from runtime.postprocess import detect_faces, iou_plus_one


def slow_greedy(boxes, valid, threshold):
    """Sequential greedy NMS over boxes already in score order: one box at a time, plain Python.

    IoU and threshold are compared in float32, as torch (and NumPy 2) compare a float32 array to a scalar.
    """
    kept, threshold = [], np.float32(threshold)
    for j in range(len(boxes)):
        if valid[j] and all(np.float32(iou_plus_one(boxes[i], boxes[j:j + 1])[0]) <= threshold for i in kept):
            kept.append(j)
    return kept


def random_boxes(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 40, (n, k, 2), generator=g).float()
    wh = torch.randint(1, 12, (n, k, 2), generator=g).float()
    return torch.cat((xy, xy + wh), dim=2)


@pytest.mark.parametrize("seed", range(4))
def test_nms_equals_sequential_greedy(seed):
    boxes = random_boxes(3, 120, seed)    # integer boxes on a small grid: many ties and equal IoUs
    valid = torch.rand(3, 120, generator=torch.Generator().manual_seed(seed)) > 0.1
    keep = greedy_nms_sorted(boxes, valid, 0.4)
    for n in range(3):
        assert torch.nonzero(keep[n]).flatten().tolist() == slow_greedy(boxes[n], valid[n], 0.4)


def test_iou_exactly_at_threshold_survives():
    # "+1" areas: A = 10x10 = 100 px, B = 10x4 = 40 px inside A: IoU = 40/100, exactly the threshold.
    boxes = torch.tensor([[[0., 0., 9., 9.], [0., 0., 9., 3.]]])
    both = torch.ones(1, 2, dtype=torch.bool)
    assert float(iou_matrix_plus_one(boxes)[0, 0, 1]) == float(np.float32(0.4))
    assert greedy_nms_sorted(boxes, both, 0.4)[0].tolist() == [True, True]
    assert greedy_nms_sorted(boxes, both, 0.39)[0].tolist() == [True, False]


def test_suppression_chain_resolves_like_greedy():
    # Each box overlaps the next: greedy keeps 0, 2, 4, ... (a chain that needs several passes).
    x = torch.arange(12, dtype=torch.float32) * 5
    boxes = torch.stack((x, torch.zeros(12), x + 9, torch.full((12,), 9.0)), dim=1)[None]
    keep = greedy_nms_sorted(boxes, torch.ones(1, 12, dtype=torch.bool), 0.3)
    assert torch.nonzero(keep[0]).flatten().tolist() == slow_greedy(boxes[0], [True] * 12, 0.3)


def test_batch_equals_per_image_detect_faces(crowd_reference):
    ref = crowd_reference
    loc, conf, landms = (torch.from_numpy(ref[k]) for k in ("loc_640", "conf_640", "landms_640"))
    priors = torch.from_numpy(ref["priors_640"])
    g = torch.Generator().manual_seed(5)
    conf2 = torch.softmax(torch.randn(1, conf.shape[1], 2, generator=g) * 3, dim=-1)
    batch = (torch.cat((loc, loc * 0.5)), torch.cat((conf, conf2)), torch.cat((landms, landms)))
    dets, counts = detect_faces_batch(*batch, priors, 640, 640)
    for n in range(2):
        expected = detect_faces(batch[0][n], batch[1][n], batch[2][n], priors, 640, 640)
        assert int(counts[n]) == len(expected)
        assert torch.equal(dets[n, :counts[n]], expected)


def test_crowd_matches_original_detections(crowd_reference):
    ref = crowd_reference
    loc, conf, landms = (torch.from_numpy(ref[k]) for k in ("loc_640", "conf_640", "landms_640"))
    dets, counts = detect_faces_batch(loc, conf, landms, torch.from_numpy(ref["priors_640"]), 640, 640)
    np.testing.assert_allclose(dets[0, :counts[0]].numpy(), ref["dets_640_in640coords"], atol=1e-4)


def test_keep_top_k_caps_the_count(crowd_reference):
    ref = crowd_reference
    loc, conf, landms = (torch.from_numpy(ref[k]) for k in ("loc_640", "conf_640", "landms_640"))
    options = DetectionOptions(keep_top_k=10)
    dets, counts = detect_faces_batch(loc, conf, landms, torch.from_numpy(ref["priors_640"]), 640, 640, options)
    assert dets.shape[1] == 10 and int(counts[0]) == 10
