"""Decoding and NMS inside the network (``build --with-postprocess``): two fixed-size detection outputs.

After the three heads (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10], float32) and for one fixed input
size W×H, :func:`add_postprocess` adds, in this order:

1. **decode**, element-wise against the priors (constants, ``runtime.priors.prior_boxes``): boxes and the
   five landmarks in input pixels, operation for operation as ``runtime.postprocess.decode_boxes`` /
   ``decode_landmarks`` compute them, so the float32 values are the same;
2. **top-k**: the K = min(top_k, P) best scores (``ITopKLayer``, TensorRT's K ≤ 3840) and their rows
   (``IGatherLayer`` with one element-wise dimension, so landmarks travel with their box);
3. **NMS** (``INMSLayer``) on those K boxes: a box is kept when its score is above
   ``confidence_threshold`` and its IoU with every kept box is ≤ ``nms_threshold``, at most
   ``keep_top_k`` per image;
4. **compaction** into a fixed size: an ``IScatterLayer`` writes K − k at each kept candidate k, a second
   top-k over that key lists the kept rows by decreasing score, the rest is zeroed.

Outputs (:data:`DETECTION_NAMES`): ``dets`` float32 [N, D, 15], D = keep_top_k, rows (x1, y1, x2, y2, score,
then five (x, y) landmark pairs) in network-input pixels, sorted by score, zero past the count; ``count``
int32 [N]. Where this differs from detect.py's post-processing (``runtime.postprocess.detect_faces``):
TensorRT's IoU has no "+1 pixel" term (it is undocumented: the executor assumes the plain formula), and
detect.py's top_k of 5000 becomes at most 3840. docs/tensorrt.md gives the measured effect.
"""

from __future__ import annotations

import numpy as np

from network.layers import LayerBuilder
from retinaface_trt import detections
from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.thresholds import MAX_TOP_K, Thresholds  # noqa: F401 - TensorRT's top-k limit, re-exported

DETECTION_NAMES = ("dets", "count")


class _Builder:
    """Adds the post-processing layers, names each ``postprocess.<step>`` and owns the constants' arrays."""

    def __init__(self, net: LayerBuilder, keep):
        self.net, self.trt, self.network, self._keep = net, net.trt, net.network, keep

    def out(self, layer, name: str, index: int = 0):
        layer.name = f"postprocess.{name}"
        return layer.get_output(index)

    def constant(self, array: np.ndarray, name: str):
        """A constant of ``array``'s shape and type (0-D included: its one value is stored flat)."""
        trt, values = self.trt, self._keep(np.array(array, order="C").reshape(-1))
        return self.out(self.network.add_constant(np.shape(array), trt.Weights(values)), name)

    def scalar(self, value, dtype, name: str):
        """A 0-D constant (the NMS layer's count and thresholds)."""
        return self.constant(np.array(value, dtype=dtype), name)

    def elementwise(self, a, b, op, name: str):
        """``op`` (a ``trt.ElementWiseOperation``) of two tensors of the same rank (broadcast over 1s)."""
        return self.out(self.network.add_elementwise(a, b, op), name)

    def take(self, x, indices, axis: int, name: str):
        """``x`` indexed along ``axis`` by constant ``indices`` (a list keeps the axis, an int removes it)."""
        index = self.constant(np.asarray(indices, dtype=np.int32), f"{name}.indices")
        return self.gather(x, index, axis, 0, name)

    def gather(self, x, indices, axis: int, shared_dims: int, name: str):
        trt, layer = self.trt, self.network.add_gather(x, indices, axis)
        layer.mode = trt.GatherMode.DEFAULT
        layer.num_elementwise_dims = shared_dims
        return self.out(layer, name)

    def reshape(self, x, dims, name: str):
        layer = self.network.add_shuffle(x)
        layer.zero_is_placeholder = True     # 0 copies the batch (and prior) dims, which stay in place
        layer.reshape_dims = tuple(dims)
        return self.out(layer, name)

    def topk(self, x, k: int, name: str):
        """The ``k`` largest values of [N, L] along axis 1 and their int32 indices."""
        trt = self.trt
        layer = self.network.add_topk(x, trt.TopKOperation.MAX, k, 1 << 1)
        if hasattr(trt.ITopKLayer, "indices_type"):     # 10.14+; int32 is the default before
            layer.indices_type = trt.int32
        return self.out(layer, f"{name}.values"), layer.get_output(1)


def add_postprocess(net: LayerBuilder, loc, conf, landms, priors: np.ndarray, input_size: tuple[int, int],
                    settings: Thresholds, keep) -> tuple:
    """Add decode → top-k → NMS → compaction after the heads; return the (dets, count) tensors.

    loc/conf/landms: float32 tensors [N, P, 4/2/10]; priors: float32 [P, 4] (cx, cy, w, h) normalised, for
    ``input_size`` (W, H) pixels; ``keep(array) -> array`` must keep each array alive until the build ends.
    """
    settings = settings.in_engine()
    count = int(priors.shape[0])
    candidates = min(settings.top_k, count)
    if settings.keep_top_k > candidates:
        raise RetinaFaceError(f"keep_top_k {settings.keep_top_k} is larger than the {candidates} candidates of a "
                              f"{input_size[0]}x{input_size[1]} input (top_k {settings.top_k}, {count} priors); "
                              f"lower --keep-top-k to at most {candidates}")
    b = _Builder(net, keep)
    rows = _decoded_rows(b, loc, conf, landms, priors, input_size, net.cfg.variance)
    score = b.take(conf, 1, 2, "score")                                    # [N, P]
    values, order = b.topk(score, candidates, "topk")                      # [N, K]
    rows = b.gather(rows, order, 1, 1, "topk.rows")                        # [N, K, 15]
    selected = _nms(b, rows, values, settings, candidates)                 # [M, 3]
    return _compact(b, rows, values, selected, settings.keep_top_k, candidates)


def _decoded_rows(b: _Builder, loc, conf, landms, priors, input_size, variances):
    """[N, P, 15]: decoded box and landmarks in pixels with the score between them, in the row layout of
    :mod:`retinaface_trt.detections` (box, score, landmarks)."""
    trt, (width, height) = b.trt, input_size
    boxes = _concat(b, _decoded_corners(b, loc, priors, variances), "box")
    scale = b.constant(np.array([[[width, height] * 2]], np.float32), "scale4")
    boxes = b.elementwise(boxes, scale, trt.ElementWiseOperation.PROD, "box.pixels")
    points = _decoded_landmarks(b, landms, priors, variances, input_size)
    return _concat(b, [boxes, b.take(conf, [1], 2, "score.column"), points], "rows")


def _decoded_corners(b: _Builder, loc, priors, variances) -> list:
    """[top-left, bottom-right], each [N, P, 2] normalised: runtime.postprocess.decode_boxes, in its order
    (centre + loc[:2]·v0·size; size·exp(loc[2:]·v1); top_left = centre − size/2; top_left + size)."""
    trt = b.trt
    centre = b.constant(priors[None, :, :2], "priors.centre")               # [1, P, 2]
    size = b.constant(priors[None, :, 2:], "priors.size")
    v0 = b.constant(np.full((1, 1, 1), variances[0], np.float32), "variance0")
    v1 = b.constant(np.full((1, 1, 1), variances[1], np.float32), "variance1")
    offset = b.elementwise(b.take(loc, [0, 1], 2, "loc.centre"), v0, trt.ElementWiseOperation.PROD, "box.offset")
    offset = b.elementwise(offset, size, trt.ElementWiseOperation.PROD, "box.offset.size")
    box_centre = b.elementwise(centre, offset, trt.ElementWiseOperation.SUM, "box.centre")
    log_size = b.elementwise(b.take(loc, [2, 3], 2, "loc.size"), v1, trt.ElementWiseOperation.PROD, "box.log_size")
    growth = b.out(b.network.add_unary(log_size, trt.UnaryOperation.EXP), "box.growth")
    box_size = b.elementwise(size, growth, trt.ElementWiseOperation.PROD, "box.size")
    two = b.constant(np.full((1, 1, 1), 2.0, np.float32), "two")
    half = b.elementwise(box_size, two, trt.ElementWiseOperation.DIV, "box.half")
    top_left = b.elementwise(box_centre, half, trt.ElementWiseOperation.SUB, "box.top_left")
    return [top_left, b.elementwise(top_left, box_size, trt.ElementWiseOperation.SUM, "box.bottom_right")]


def _decoded_landmarks(b: _Builder, landms, priors, variances, input_size):
    """[N, P, 10] landmark points in pixels: runtime.postprocess.decode_landmarks, same order of operations."""
    trt, (width, height) = b.trt, input_size
    centre = b.constant(priors[None, :, None, :2], "priors.centre5")        # [1, P, 1, 2]
    size = b.constant(priors[None, :, None, 2:], "priors.size5")
    v0 = b.constant(np.full((1, 1, 1, 1), variances[0], np.float32), "variance0.5")
    offsets = b.reshape(landms, (0, 0, 5, 2), "landmarks.pairs")
    offsets = b.elementwise(offsets, v0, trt.ElementWiseOperation.PROD, "landmarks.offset")
    offsets = b.elementwise(offsets, size, trt.ElementWiseOperation.PROD, "landmarks.offset.size")
    points = b.elementwise(centre, offsets, trt.ElementWiseOperation.SUM, "landmarks.points")
    points = b.reshape(points, (0, 0, 10), "landmarks.flat")
    scale = b.constant(np.array([[[width, height] * 5]], np.float32), "scale10")
    return b.elementwise(points, scale, trt.ElementWiseOperation.PROD, "landmarks.pixels")


def _concat(b: _Builder, tensors, name: str):
    layer = b.network.add_concatenation(list(tensors))
    layer.axis = 2      # the default (rank − 3) would be the batch axis of these 3-D tensors
    return b.out(layer, name)


def _nms(b: _Builder, rows, values, settings: Thresholds, candidates: int):
    """INMSLayer over the K candidate boxes [N, K, 4] (corners, pixels) and scores [N, K, 1] → [M, 3]."""
    trt = b.trt
    boxes = b.take(rows, list(detections.BOX_COLUMNS), 2, "nms.boxes")
    scores = b.reshape(values, (0, 0, 1), "nms.scores")
    layer = b.network.add_nms(boxes, scores, b.scalar(settings.keep_top_k, np.int32, "nms.max_boxes"))
    layer.set_input(3, b.scalar(settings.nms_threshold, np.float32, "nms.iou_threshold"))
    layer.set_input(4, b.scalar(settings.confidence_threshold, np.float32, "nms.score_threshold"))
    layer.bounding_box_format = trt.BoundingBoxFormat.CORNER_PAIRS
    layer.topk_box_limit = candidates          # all K candidates (K ≤ 3840 < the 5000 maximum)
    if hasattr(trt.INMSLayer, "indices_type"):           # 10.14+; int32 is the default before
        layer.indices_type = trt.int32
    return b.out(layer, "nms")


def _compact(b: _Builder, rows, values, selected, keep: int, candidates: int):
    """Kept candidates → dets [N, D, 15] by decreasing score, zero rows past the count, and count [N]."""
    trt = b.trt
    where = b.take(selected, [0, 2], 1, "kept.where")                       # [M, 2]: (image, candidate)
    index = b.out(b.network.add_cast(b.take(selected, 2, 1, "kept.index"), trt.float32), "kept.index.float")
    k = b.constant(np.array([candidates], np.float32), "kept.k")
    key = b.elementwise(k, index, trt.ElementWiseOperation.SUB, "kept.key")             # K − k > 0
    zero, one = (b.constant(np.full((1, 1), v, np.float32), n) for v, n in ((0.0, "zero"), (1.0, "one")))
    zeros = b.elementwise(values, zero, trt.ElementWiseOperation.PROD, "kept.zeros")    # [N, K]
    marks = b.out(b.network.add_scatter(zeros, where, key, trt.ScatterMode.ND), "kept.marks")
    marks, order = b.topk(marks, keep, "kept.order")                        # largest K − k: best score first
    picked = b.gather(rows, order, 1, 1, "kept.rows")                       # [N, D, 15]
    valid = b.elementwise(marks, one, trt.ElementWiseOperation.MIN, "kept.valid")       # 1 kept, 0 padding
    column = b.reshape(valid, (0, 0, 1), "kept.valid.column")
    dets = b.elementwise(picked, column, trt.ElementWiseOperation.PROD, "dets")
    total = b.out(b.network.add_reduce(valid, trt.ReduceOperation.SUM, 1 << 1, False), "count.float")
    return dets, b.out(b.network.add_cast(total, trt.int32), "count")


def check_fixed_size(input_shape) -> tuple[int, int]:
    """(W, H) of an (N, 3, H, W) input shape; RetinaFaceError if height or width is dynamic."""
    height, width = (int(d) for d in tuple(input_shape)[2:])
    if height <= 0 or width <= 0:
        raise RetinaFaceError("post-processing inside the engine needs a fixed input size (the priors are "
                              "constants of the network): build with --input-size WxH and without "
                              "--min-size/--max-size")
    return width, height
