"""Decoding and NMS inside the network (network.postprocess), run by the executor, against an independent
NumPy implementation of TensorRT's documented top-k and NMS, and against detect.py's post-processing
(runtime.postprocess.detect_faces) on the stored outputs of the original implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from network import DETECTION_NAMES, MAX_TOP_K, populate_network
from retinaface_trt.thresholds import Thresholds
from network.config import MOBILENET_0_25
from network.executor import Program, trt
from network.layers import LayerBuilder
from network.weights import WeightStore
from network.postprocess import add_postprocess
from retinaface_trt.errors import RetinaFaceError

SIZE = 64          # hand-made cases: a 64×64 input, so pixel coordinates k/2 are exact as fractions of it


def postprocess_program(priors: np.ndarray, settings: Thresholds, size=(SIZE, SIZE)) -> Program:
    """A network whose inputs are the three heads and whose outputs are dets and count."""
    definition = trt.Builder(trt.Logger()).create_network(0)
    count = priors.shape[0]
    heads = [definition.add_input(n, trt.float32, (-1, count, k)) for n, k in (("loc", 4), ("conf", 2), ("landms", 10))]
    store = WeightStore({}, np.float32)
    outputs = add_postprocess(LayerBuilder(trt, definition, store, MOBILENET_0_25), *heads, priors, size, settings, store.keep)
    for name, tensor in zip(DETECTION_NAMES, outputs):
        tensor.name = name
        definition.mark_output(tensor)
    program = Program(definition)
    program.keep_alive = store
    return program


def priors_for(boxes_px) -> np.ndarray:
    """Priors whose decoding with zero offsets gives exactly these (x1, y1, x2, y2) pixel boxes."""
    b = np.asarray(boxes_px, np.float64)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
                    axis=1).astype(np.float32) / SIZE


def run_network(priors, scores, settings, loc=None, landms=None, size=(SIZE, SIZE)):
    scores = np.asarray(scores, np.float32).reshape(-1, priors.shape[0])
    n = scores.shape[0]
    conf = np.stack([1 - scores, scores], axis=2).astype(np.float32)
    loc = np.zeros((n, priors.shape[0], 4), np.float32) if loc is None else loc
    landms = np.zeros((n, priors.shape[0], 10), np.float32) if landms is None else landms
    out = postprocess_program(priors, settings, size)(
        {"loc": torch.from_numpy(loc), "conf": torch.from_numpy(conf), "landms": torch.from_numpy(landms)})
    return out["dets"].numpy(), out["count"].numpy()


# The reference: decoding from RETINAFACE_FACTS.md, then TensorRT's documented top-k and NMS. -----------
def decode_reference(loc, conf, landms, priors, width, height, variances=(0.1, 0.2)):
    """Rows [P, 15] (box, score, landmarks) in pixels, float32 NumPy arithmetic."""
    v0, v1 = np.float32(variances[0]), np.float32(variances[1])
    centre = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * v1)
    top_left = centre - size / np.float32(2)
    boxes = np.concatenate([top_left, top_left + size], axis=1) * np.float32([width, height] * 2)
    points = (priors[:, None, :2] + landms.reshape(-1, 5, 2) * v0 * priors[:, None, 2:]).reshape(-1, 10)
    return np.concatenate([boxes, conf[:, 1:2], points * np.float32([width, height] * 5)], axis=1)


def iou(a, b, plus_one: bool):
    one = np.float32(1 if plus_one else 0)
    w = max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0]) + one)
    h = max(np.float32(0), min(a[3], b[3]) - max(a[1], b[1]) + one)
    inter = w * h
    union = (a[2] - a[0] + one) * (a[3] - a[1] + one) + (b[2] - b[0] + one) * (b[3] - b[1] + one) - inter
    return inter / union if union > 0 else np.float32(0)


def select_reference(rows, settings: Thresholds, plus_one=False, top_k=None):
    """Indices kept: the best top_k by score (ties: lower index), score > threshold, greedy IoU ≤ threshold."""
    order = np.argsort(-rows[:, 4], kind="stable")[:top_k or settings.top_k]
    kept = []
    for i in order:
        if rows[i, 4] > np.float32(settings.confidence_threshold) and len(kept) < settings.keep_top_k and all(
                iou(rows[i], rows[j], plus_one) <= np.float32(settings.nms_threshold) for j in kept):
            kept.append(i)
    return rows[kept]


def check_against_reference(dets, count, rows_per_image, settings, atol=0.0):
    assert dets.shape == (len(rows_per_image), settings.keep_top_k, 15)
    for image, rows in enumerate(rows_per_image):
        expected = select_reference(rows, settings)
        assert count[image] == len(expected)
        np.testing.assert_allclose(dets[image, :len(expected)], expected, rtol=0, atol=atol)
        assert not dets[image, len(expected):].any()


# Hand-made cases ---------------------------------------------------------------------------------------
def test_a_box_exactly_at_the_iou_threshold_is_kept_and_one_above_is_removed():
    boxes = [[0, 0, 16, 16], [0, 0, 16, 8], [0, 0, 16, 9], [40, 40, 50, 50]]   # IoU with the first: 0.5, 0.5625
    settings = Thresholds(nms_threshold=0.5, keep_top_k=4).in_engine()
    dets, count = run_network(priors_for(boxes), [0.9, 0.8, 0.7, 0.6], settings)
    assert count.tolist() == [3]
    np.testing.assert_array_equal(dets[0, :3, :5],
                                  np.float32([[0, 0, 16, 16, 0.9], [0, 0, 16, 8, 0.8], [40, 40, 50, 50, 0.6]]))
    assert not dets[0, 3:].any()


def test_equal_scores_keep_the_lower_index_first():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [31, 30, 41, 40]]
    dets, count = run_network(priors_for(boxes), [0.5] * 4, Thresholds(keep_top_k=4).in_engine())
    assert count.tolist() == [2]
    np.testing.assert_array_equal(dets[0, :2, :4], [[0, 0, 10, 10], [30, 30, 40, 40]])


def test_no_candidate_above_the_confidence_threshold_gives_zero_rows():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 30]]
    dets, count = run_network(priors_for(boxes), [[0.02, 0.01], [0.3, 0.02]], Thresholds(keep_top_k=2).in_engine())
    assert count.tolist() == [0, 1] and not dets[0].any() and dets[1, 0, 4] == np.float32(0.3)


def test_more_candidates_than_top_k_considers_only_the_best_k():
    boxes = [[6 * i, 0, 6 * i + 4, 4] for i in range(10)]                          # ten disjoint boxes
    scores = np.linspace(0.9, 0.45, 10, dtype=np.float32)
    settings = Thresholds(top_k=4, keep_top_k=3).in_engine()
    dets, count = run_network(priors_for(boxes), scores, settings)
    assert count.tolist() == [3]
    np.testing.assert_array_equal(dets[0, :, 4], scores[:3])


def test_landmarks_travel_with_their_box():
    boxes = [[0, 0, 8, 8], [20, 20, 36, 36], [21, 20, 37, 36]]
    landms = np.zeros((1, 3, 10), np.float32)
    landms[0, 1] = np.arange(10, dtype=np.float32)              # offsets of the best box only
    dets, count = run_network(priors_for(boxes), [0.3, 0.9, 0.8], Thresholds(keep_top_k=3).in_engine(), landms=landms)
    centre, size = np.float32([28, 28]), np.float32([16, 16])
    expected = (centre / SIZE + np.arange(10, dtype=np.float32).reshape(5, 2) * np.float32(0.1) * size / SIZE) * SIZE
    assert count.tolist() == [2]
    np.testing.assert_allclose(dets[0, 0, 5:], expected.reshape(-1), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(dets[0, 1, 5:], np.tile([4, 4], 5))


def test_random_batch_matches_the_reference():
    rng = np.random.default_rng(3)
    count = 300
    corners = rng.uniform(0, 50, (count, 2))
    priors = priors_for(np.concatenate([corners, corners + rng.uniform(3, 14, (count, 2))], axis=1))
    scores = rng.uniform(0, 1, (2, count)).astype(np.float32)
    loc = rng.normal(0, 1, (2, count, 4)).astype(np.float32)
    landms = rng.normal(0, 1, (2, count, 10)).astype(np.float32)
    settings = Thresholds(confidence_threshold=0.3, nms_threshold=0.35, top_k=120, keep_top_k=40).in_engine()
    dets, counts = run_network(priors, scores, settings, loc=loc, landms=landms)
    conf = np.stack([1 - scores, scores], axis=2)
    rows = [decode_reference(loc[i], conf[i], landms[i], priors, SIZE, SIZE) for i in range(2)]
    check_against_reference(dets, counts, rows, settings, atol=1e-4)    # exp may differ by one ulp
    assert counts.min() >= 20


def test_plain_iou_keeps_a_small_box_that_the_plus_one_iou_removes():
    """A documented difference: boxes 4 px wide overlapping by 2 px have IoU 1/3 plainly, 3/7 with "+1"."""
    boxes = [[0, 0, 4, 4], [2, 0, 6, 4]]
    rows = decode_reference(np.zeros((2, 4), np.float32), np.float32([[0.1, 0.9], [0.2, 0.8]]),
                            np.zeros((2, 10), np.float32), priors_for(boxes), SIZE, SIZE)
    settings = Thresholds(keep_top_k=2).in_engine()
    assert len(select_reference(rows, settings, plus_one=True)) == 1
    dets, count = run_network(priors_for(boxes), [0.9, 0.8], settings)
    assert count.tolist() == [2]


# Against detect.py's post-processing on the original implementation's outputs ------------------------------
@pytest.fixture(scope="module")
def crowd_network_output(crowd_reference):
    ref = crowd_reference
    priors = ref["priors_640"]
    out = postprocess_program(priors, Thresholds().in_engine(), (640, 640))(
        {n: torch.from_numpy(ref[f"{n}_640"]) for n in ("loc", "conf", "landms")})
    return out["dets"][0].numpy(), int(out["count"][0])


def test_reference_selection_with_plus_one_and_top_k_5000_is_detect_py(crowd_reference):
    """The NumPy reference is faithful: with detect.py's IoU and top_k it reproduces detect_faces."""
    from retinaface_trt.thresholds import Thresholds
    from runtime.postprocess import detect_faces

    ref = crowd_reference
    expected = detect_faces(*(torch.from_numpy(ref[f"{n}_640"][0]) for n in ("loc", "conf", "landms")),
                            torch.from_numpy(ref["priors_640"]), 640, 640, Thresholds()).numpy()
    rows = decode_reference(ref["loc_640"][0], ref["conf_640"][0], ref["landms_640"][0], ref["priors_640"], 640, 640)
    got = select_reference(rows, Thresholds(keep_top_k=750).in_engine(), plus_one=True, top_k=5000)
    assert len(got) == len(expected) > 100
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_network_equals_the_reference_on_the_crowd_photo(crowd_network_output, crowd_reference):
    ref = crowd_reference
    dets, count = crowd_network_output
    rows = decode_reference(ref["loc_640"][0], ref["conf_640"][0], ref["landms_640"][0], ref["priors_640"], 640, 640)
    check_against_reference(dets[None], np.array([count]), [rows], Thresholds().in_engine(), atol=1e-4)


def test_faces_above_0_5_equal_detect_py_on_the_crowd_photo(crowd_network_output, crowd_reference):
    """Bound (measured, docs/tensorrt.md): every detection scoring ≥ 0.5 is the same in both, row for row."""
    from retinaface_trt.thresholds import Thresholds
    from runtime.postprocess import detect_faces

    ref = crowd_reference
    expected = detect_faces(*(torch.from_numpy(ref[f"{n}_640"][0]) for n in ("loc", "conf", "landms")),
                            torch.from_numpy(ref["priors_640"]), 640, 640, Thresholds()).numpy()
    dets, count = crowd_network_output
    ours, theirs = dets[:count][dets[:count, 4] >= 0.5], expected[expected[:, 4] >= 0.5]
    assert len(ours) == len(theirs) == 24
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


# The option of populate_network ------------------------------------------------------------------------
def test_populate_with_postprocess_marks_dets_and_count(mnet_pth):
    from runtime.priors import prior_boxes
    from wts_export.weights import load_weights

    network = trt.Builder(trt.Logger()).create_network(0)
    populate_network(trt, network, load_weights(mnet_pth), input_shape=(-1, 3, 96, 128), half=True,
                     postprocess=Thresholds(keep_top_k=100).in_engine(), priors=prior_boxes(MOBILENET_0_25, 96, 128))
    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    assert list(outputs) == list(DETECTION_NAMES)
    assert outputs["dets"].shape == (-1, 100, 15) and outputs["dets"].dtype == trt.float32
    assert outputs["count"].shape == (-1,) and outputs["count"].dtype == trt.int32


def test_postprocess_refuses_a_dynamic_input_size(mnet_pth):
    from wts_export.weights import load_weights

    network = trt.Builder(trt.Logger()).create_network(0)
    with pytest.raises(RetinaFaceError, match="needs a fixed input size"):
        populate_network(trt, network, load_weights(mnet_pth), input_shape=(-1, 3, -1, -1),
                         postprocess=Thresholds().in_engine(), priors=np.zeros((0, 4), np.float32))


def test_postprocess_refuses_priors_of_another_size(mnet_pth):
    from runtime.priors import prior_boxes
    from wts_export.weights import load_weights

    network = trt.Builder(trt.Logger()).create_network(0)
    with pytest.raises(RetinaFaceError, match=r"priors must be float32 \[16800, 4\]"):
        populate_network(trt, network, load_weights(mnet_pth), input_shape=(1, 3, 640, 640),
                         postprocess=Thresholds().in_engine(), priors=prior_boxes(MOBILENET_0_25, 320, 320))


@pytest.mark.parametrize("field, value", [("keep_top_k", 3841), ("keep_top_k", 0), ("top_k", 0),
                                          ("nms_threshold", 1.5), ("confidence_threshold", float("nan"))])
def test_settings_out_of_range_are_refused(field, value):
    with pytest.raises(RetinaFaceError, match=field):
        Thresholds(**{field: value}).in_engine()


def test_the_engine_takes_detect_py_top_k_clipped_to_tensorrt_limit():
    assert Thresholds(top_k=5000).in_engine() == Thresholds(top_k=MAX_TOP_K)
    assert Thresholds(top_k=100).in_engine() == Thresholds(top_k=100)


def test_keep_top_k_above_the_candidates_is_refused():
    with pytest.raises(RetinaFaceError, match="lower --keep-top-k to at most 2"):
        postprocess_program(priors_for([[0, 0, 4, 4], [8, 8, 12, 12]]), Thresholds(keep_top_k=3).in_engine())
