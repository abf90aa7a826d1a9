"""Executor gather, top-k, scatter, NMS, unary and reduce layers against NumPy references of TensorRT's
documented semantics (NvInfer.h and the 11.4 bindings' docstrings), one behaviour per test."""

import numpy as np
import pytest
import torch

from network.executor import Program, trt


def new_network():
    return trt.Builder(trt.Logger()).create_network(0)


def run(network, outputs, **inputs):
    for i, tensor in enumerate(outputs):
        tensor.name = f"out{i}"
        network.mark_output(tensor)
    results = Program(network)({k: torch.as_tensor(v) for k, v in inputs.items()})
    return [results[f"out{i}"].numpy() for i in range(len(outputs))]


def constant(net, array):
    array = np.asarray(array)
    return net.add_constant(array.shape, trt.Weights(np.array(array, order="C").reshape(-1))).get_output(0)


# Gather ------------------------------------------------------------------------------------------------
def test_gather_default_picks_slices_along_the_axis():
    data = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    net = new_network()
    x = net.add_input("x", trt.float32, (2, 5, 3))
    layer = net.add_gather(x, constant(net, np.array([[4, 0], [1, 1]], np.int32)), 1)
    (got,) = run(net, [layer.get_output(0)], x=data)
    np.testing.assert_array_equal(got, np.take(data, [[4, 0], [1, 1]], axis=1))


def test_gather_scalar_index_removes_the_axis():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    net = new_network()
    x = net.add_input("x", trt.float32, (3, 4))
    (got,) = run(net, [net.add_gather(x, constant(net, np.array(2, np.int32)), 1).get_output(0)], x=data)
    np.testing.assert_array_equal(got, data[:, 2])


def test_gather_negative_counts_from_the_end_and_out_of_range_gives_zeros():
    data = np.arange(1, 7, dtype=np.float32).reshape(1, 6)
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 6))
    (got,) = run(net, [net.add_gather(x, constant(net, np.array([-1, 6, 2], np.int32)), 1).get_output(0)], x=data)
    np.testing.assert_array_equal(got, [[6, 0, 3]])


def test_gather_with_one_elementwise_dim_gathers_per_batch_item():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 7, 4)).astype(np.float32)
    index = rng.integers(0, 7, (3, 5)).astype(np.int32)
    net = new_network()
    x = net.add_input("x", trt.float32, (-1, 7, 4))
    i = net.add_input("i", trt.int32, (-1, 5))
    layer = net.add_gather(x, i, 1)
    layer.num_elementwise_dims = 1
    (got,) = run(net, [layer.get_output(0)], x=data, i=index)
    np.testing.assert_array_equal(got, np.stack([data[n][index[n]] for n in range(3)]))


def test_gather_elementwise_dim_broadcasts_data_of_batch_one():
    data = np.arange(8, dtype=np.float32).reshape(1, 8)
    index = np.array([[7, 0], [3, 3]], np.int32)
    net = new_network()
    i = net.add_input("i", trt.int32, (2, 2))
    layer = net.add_gather(constant(net, data), i, 1)
    layer.num_elementwise_dims = 1
    (got,) = run(net, [layer.get_output(0)], i=index)
    np.testing.assert_array_equal(got, [[7, 0], [3, 3]])


def test_gather_refuses_negative_index_into_a_dynamic_dimension():
    net = new_network()
    x = net.add_input("x", trt.float32, (1, -1))
    with pytest.raises(ValueError, match="negative index into a dimension of dynamic length"):
        run(net, [net.add_gather(x, constant(net, np.array([-1], np.int32)), 1).get_output(0)],
            x=np.zeros((1, 4), np.float32))


# Top-k -------------------------------------------------------------------------------------------------
def test_topk_max_is_sorted_with_ties_by_lower_index():
    data = np.array([[0.5, 0.9, 0.5, 0.1, 0.9]], np.float32)
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 5))
    layer = net.add_topk(x, trt.TopKOperation.MAX, 4, 1 << 1)
    values, indices = run(net, [layer.get_output(0), layer.get_output(1)], x=data)
    np.testing.assert_array_equal(values, data[:, [1, 4, 0, 2]])
    assert indices.dtype == np.int32 and indices.tolist() == [[1, 4, 0, 2]]


def test_topk_min_along_a_middle_axis():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2, 9, 3)).astype(np.float32)
    net = new_network()
    x = net.add_input("x", trt.float32, (2, 9, 3))
    layer = net.add_topk(x, trt.TopKOperation.MIN, 3, 1 << 1)
    values, indices = run(net, [layer.get_output(0), layer.get_output(1)], x=data)
    expected = np.argsort(data, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(data, expected, axis=1))


@pytest.mark.parametrize("k", [0, 3841])
def test_topk_k_outside_tensorrt_range_is_refused(k):
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 5000))
    layer = net.add_topk(x, trt.TopKOperation.MAX, k, 1 << 1)
    with pytest.raises(ValueError, match="k must be in 1..3840"):
        layer.get_output(0).shape


def test_topk_k_larger_than_the_axis_is_refused():
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 5))
    with pytest.raises(ValueError, match="larger than the 5 values"):
        net.add_topk(x, trt.TopKOperation.MAX, 6, 1 << 1).get_output(0).shape


# Scatter -----------------------------------------------------------------------------------------------
def test_scatter_nd_writes_updates_at_index_tuples():
    data = np.zeros((2, 4), np.float32)
    net = new_network()
    x = net.add_input("x", trt.float32, (2, 4))
    layer = net.add_scatter(x, constant(net, np.array([[0, 3], [1, 0], [1, 2]], np.int32)),
                            constant(net, np.array([5, 6, 7], np.float32)), trt.ScatterMode.ND)
    (got,) = run(net, [layer.get_output(0)], x=data)
    np.testing.assert_array_equal(got, [[0, 0, 0, 5], [6, 0, 7, 0]])


def test_scatter_nd_of_rows():
    net = new_network()
    x = net.add_input("x", trt.float32, (3, 2))
    layer = net.add_scatter(x, constant(net, np.array([[2]], np.int32)), constant(net, np.array([[8, 9]], np.float32)),
                            trt.ScatterMode.ND)
    (got,) = run(net, [layer.get_output(0)], x=np.ones((3, 2), np.float32))
    np.testing.assert_array_equal(got, [[1, 1], [1, 1], [8, 9]])


@pytest.mark.parametrize("indices, message", [([[0, 1], [0, 1]], "duplicate"), ([[0, 4]], "outside")])
def test_scatter_undefined_cases_are_refused(indices, message):
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 4))
    layer = net.add_scatter(x, constant(net, np.array(indices, np.int32)),
                            constant(net, np.ones(len(indices), np.float32)), trt.ScatterMode.ND)
    with pytest.raises(ValueError, match=message):
        run(net, [layer.get_output(0)], x=np.zeros((1, 4), np.float32))


# NMS ---------------------------------------------------------------------------------------------------
def plain_iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, areas (x2 - x1)(y2 - y1), float32 arithmetic."""
    a, b = np.float32(a), np.float32(b)
    w = max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0]))
    h = max(np.float32(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else np.float32(0)


def nms_reference(boxes, scores, limit, iou, threshold, topk_limit=5000):
    """TensorRT's documented NMS for boxes [B, N, 4] shared by classes, scores [B, N, C]: rows (b, c, i)."""
    rows = []
    for b in range(scores.shape[0]):
        picked = []
        for c in range(scores.shape[2]):
            order = [i for i in np.argsort(-scores[b, :, c], kind="stable") if scores[b, i, c] > threshold]
            kept = []
            for i in order[:topk_limit]:
                if len(kept) < limit and all(plain_iou(boxes[b, i], boxes[b, j]) <= iou for j in kept):
                    kept.append(i)
            picked += [(scores[b, i, c], c, i) for i in kept]
        order = sorted(range(len(picked)), key=lambda k: -picked[k][0])      # stable: class, then score order
        rows += [(b, picked[k][1], picked[k][2]) for k in order]
    return np.array(rows, dtype=np.int32).reshape(-1, 3)


def nms_network(shape_boxes, shape_scores, limit, iou=None, threshold=None, fmt=None, topk_limit=None):
    net = new_network()
    boxes = net.add_input("boxes", trt.float32, shape_boxes)
    scores = net.add_input("scores", trt.float32, shape_scores)
    layer = net.add_nms(boxes, scores, constant(net, np.array(limit, np.int32)))
    for index, value in ((3, iou), (4, threshold)):
        if value is not None:
            layer.set_input(index, constant(net, np.array(value, np.float32)))
    if fmt is not None:
        layer.bounding_box_format = fmt
    if topk_limit is not None:
        layer.topk_box_limit = topk_limit
    return net, [layer.get_output(0), layer.get_output(1)]


def test_nms_matches_the_reference_on_random_boxes():
    rng = np.random.default_rng(2)
    corners = rng.uniform(0, 50, (2, 60, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (2, 60, 2)).astype(np.float32)], axis=2)
    scores = rng.uniform(0, 1, (2, 60, 3)).astype(np.float32)
    net, outputs = nms_network((2, 60, 4), (2, 60, 3), 10, iou=0.3, threshold=0.2)
    selected, count = run(net, outputs, boxes=boxes, scores=scores)
    expected = nms_reference(boxes, scores, 10, 0.3, 0.2)
    np.testing.assert_array_equal(selected, expected)
    assert count.shape == () and count == len(expected) and 20 < len(expected) <= 60


def test_nms_keeps_a_box_exactly_at_the_threshold_and_removes_one_above():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 5.5]]], np.float32)   # IoU 0.5 and 0.55
    scores = np.array([[[0.9], [0.8], [0.7]]], np.float32)
    net, outputs = nms_network((1, 3, 4), (1, 3, 1), 10, iou=0.5)
    selected, _ = run(net, outputs, boxes=boxes, scores=scores)
    assert selected[:, 2].tolist() == [0, 1]


def test_nms_score_threshold_is_strict():
    boxes = np.array([[[0, 0, 1, 1], [5, 5, 6, 6]]], np.float32)
    scores = np.array([[[0.25], [0.2500001]]], np.float32)
    net, outputs = nms_network((1, 2, 4), (1, 2, 1), 10, iou=0.5, threshold=0.25)
    selected, count = run(net, outputs, boxes=boxes, scores=scores)
    assert selected.tolist() == [[0, 0, 1]] and count == 1


def test_nms_equal_scores_take_the_lower_index_first():
    boxes = np.array([[[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]]], np.float32)
    scores = np.full((1, 3, 1), 0.5, np.float32)
    net, outputs = nms_network((1, 3, 4), (1, 3, 1), 10, iou=0.5)
    selected, _ = run(net, outputs, boxes=boxes, scores=scores)
    assert selected[:, 2].tolist() == [0, 2]


def test_nms_with_no_candidate_gives_an_empty_selection():
    net, outputs = nms_network((2, 4, 4), (2, 4, 1), 10, iou=0.5, threshold=0.9)
    selected, count = run(net, outputs, boxes=np.zeros((2, 4, 4), np.float32), scores=np.full((2, 4, 1), 0.5, np.float32))
    assert selected.shape == (0, 3) and count == 0


def test_nms_caps_per_class_and_limits_candidates():
    boxes = np.array([[[10 * i, 0, 10 * i + 5, 5] for i in range(6)]], np.float32)      # disjoint boxes
    scores = np.array([[[0.9 - 0.1 * i] for i in range(6)]], np.float32)
    net, outputs = nms_network((1, 6, 4), (1, 6, 1), 3, iou=0.5)
    assert run(net, outputs, boxes=boxes, scores=scores)[0][:, 2].tolist() == [0, 1, 2]
    net, outputs = nms_network((1, 6, 4), (1, 6, 1), 10, iou=0.5, topk_limit=2)
    assert run(net, outputs, boxes=boxes, scores=scores)[0][:, 2].tolist() == [0, 1]


def test_nms_corner_pairs_take_any_two_diagonal_corners_and_centre_sizes():
    flipped = np.array([[[10, 10, 0, 0], [0, 0, 10, 6]]], np.float32)                     # IoU 0.6
    scores = np.array([[[0.9], [0.8]]], np.float32)
    net, outputs = nms_network((1, 2, 4), (1, 2, 1), 10, iou=0.5)
    assert run(net, outputs, boxes=flipped, scores=scores)[0][:, 2].tolist() == [0]
    centred = np.array([[[5, 5, 10, 10], [5, 3, 10, 6]]], np.float32)                     # the same boxes
    net, outputs = nms_network((1, 2, 4), (1, 2, 1), 10, iou=0.5, fmt=trt.BoundingBoxFormat.CENTER_SIZES)
    assert run(net, outputs, boxes=centred, scores=scores)[0][:, 2].tolist() == [0]


def test_nms_output_is_by_batch_then_decreasing_score_across_classes():
    boxes = np.array([[[0, 0, 4, 4], [10, 10, 14, 14]]] * 2, np.float32)
    scores = np.array([[[0.3, 0.8], [0.6, 0.1]], [[0.5, 0.4], [0.2, 0.9]]], np.float32)
    net, outputs = nms_network((2, 2, 4), (2, 2, 2), 10, iou=0.5, threshold=0.15)
    selected, _ = run(net, outputs, boxes=boxes, scores=scores)
    assert selected.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 0, 1]]


def test_nms_refuses_a_non_scalar_limit():
    net = new_network()
    boxes = net.add_input("boxes", trt.float32, (1, 2, 4))
    scores = net.add_input("scores", trt.float32, (1, 2, 1))
    layer = net.add_nms(boxes, scores, constant(net, np.array([3], np.int32)))
    with pytest.raises(ValueError, match="MaxOutputBoxesPerClass must be a 0-D int32"):
        layer.get_output(0).shape


# Unary and reduce --------------------------------------------------------------------------------------
def test_unary_exp():
    data = np.array([[-1.0, 0.0, 2.5]], np.float32)
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 3))
    (got,) = run(net, [net.add_unary(x, trt.UnaryOperation.EXP).get_output(0)], x=data)
    np.testing.assert_allclose(got, np.exp(data), rtol=1e-6)


def test_unary_exp_refuses_integers():
    net = new_network()
    x = net.add_input("x", trt.int32, (1, 3))
    with pytest.raises(ValueError, match="EXP does not take INT32"):
        net.add_unary(x, trt.UnaryOperation.EXP).get_output(0).shape


@pytest.mark.parametrize("keep", [False, True])
def test_reduce_sum_over_an_axis(keep):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    net = new_network()
    x = net.add_input("x", trt.float32, (2, 3, 4))
    (got,) = run(net, [net.add_reduce(x, trt.ReduceOperation.SUM, 1 << 1, keep).get_output(0)], x=data)
    np.testing.assert_array_equal(got, data.sum(axis=1, keepdims=keep))


def test_reduce_keeps_int32():
    net = new_network()
    x = net.add_input("x", trt.int32, (2, 3))
    (got,) = run(net, [net.add_reduce(x, trt.ReduceOperation.MAX, 1 << 1, False).get_output(0)],
                 x=np.array([[1, 5, 2], [7, 0, 3]], np.int32))
    assert got.dtype == np.int32 and got.tolist() == [5, 7]


def test_reduce_of_an_empty_volume_gives_the_documented_identity():
    net = new_network()
    x = net.add_input("x", trt.float32, (2, -1))
    (got,) = run(net, [net.add_reduce(x, trt.ReduceOperation.MAX, 1 << 1, False).get_output(0)],
                 x=np.zeros((2, 0), np.float32))
    assert got.tolist() == [-np.inf, -np.inf]
