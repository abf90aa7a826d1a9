"""Selection layers: gather, top-k, scatter and non-maximum suppression, with TensorRT's documented semantics.

Sources: the C++ header (``NvInfer.h``: ``IGatherLayer``, ``ITopKLayer``, ``IScatterLayer``, ``INMSLayer``)
and the docstrings of the TensorRT 11.4 Python bindings. Where TensorRT leaves a behaviour open the
executor picks one reading, states it in the class docstring (and in docs/tensorrt.md), and raises where
TensorRT calls the behaviour undefined instead of guessing:

* ties (top-k, NMS): the lower index comes first (TensorRT: "unspecified");
* NMS IoU: ``inter / (area1 + area2 - inter)`` with areas ``(x2 - x1)·(y2 - y1)``, no "+1 pixel" term, and
  0 for a zero union (TensorRT does not give the formula);
* scatter with duplicate or out-of-range indices, and gather with a negative index into a dimension of
  dynamic length: errors (TensorRT: undefined).
"""

from __future__ import annotations

import torch

from network.executor.enums import (BoundingBoxFormat, DataType, GatherMode, LayerType, ScatterMode, TopKOperation,
                                    coerce)
from network.executor.graph import Attr, ILayer, TensorInfo
from network.executor.values import TORCH_DTYPES

MAX_TOPK = 3840            # ITopKLayer: "Currently only values up to 3840 are supported"
MAX_NMS_TOPK_LIMIT = 5000  # INMSLayer.topk_box_limit: at most 5000 (2000 on SM 5.3 / 6.2)
_INDEX_TYPES = (DataType.INT32, DataType.INT64)
_FLOAT_TYPES = (DataType.FLOAT, DataType.HALF)


def _index_type(value) -> DataType:
    dtype = coerce(value, DataType)
    if dtype not in _INDEX_TYPES:
        raise ValueError(f"indices_type must be int32 or int64, got {dtype.name}")
    return dtype


def _broadcast(a: int, b: int) -> int:
    """One dimension of two broadcast shapes (-1: known at run time)."""
    if a == b or b == 1:
        return a
    if a == 1:
        return b
    return -1 if -1 in (a, b) else 0


class IGatherLayer(ILayer):
    """``GatherMode.DEFAULT`` (ONNX Gather): each index picks a slice of ``data`` along ``axis``.

    Output shape, rank q + r - 1 - num_elementwise_dims: with ``num_elementwise_dims`` 0,
    ``data[:axis] + indices + data[axis+1:]``; with 1, the leading dimension is shared (broadcast) by
    data and indices, ``out[n, ...] = gather(data[n], indices[n])``. Negative indices count from the
    end; an index out of range after that gives zeros ("Zero will be stored for OOB access").
    """

    _type = LayerType.GATHER
    axis = Attr(0, int)
    mode = Attr(GatherMode.DEFAULT, lambda v: coerce(v, GatherMode))
    num_elementwise_dims = Attr(0, int)

    def _infer(self, inputs):
        data, indices = inputs
        batch = self._check(data, indices)
        axis, lead = self.axis, self.num_elementwise_dims
        shape = batch + data.shape[lead:axis] + indices.shape[lead:] + data.shape[axis + 1:]
        return [TensorInfo(shape, data.dtype)]

    def _check(self, data: TensorInfo, indices: TensorInfo) -> tuple[int, ...]:
        """Validate the configuration; return the shared leading dimension as a tuple (empty for 0)."""
        lead = self.num_elementwise_dims
        if lead not in (0, 1):
            raise self._error(f"num_elementwise_dims must be 0 or 1 in GatherMode.DEFAULT, got {lead}")
        if not lead <= self.axis < len(data.shape):
            raise self._error(f"axis {self.axis} must be in [{lead}, {len(data.shape)}) for data {data.shape}")
        if indices.dtype not in _INDEX_TYPES:
            raise self._error(f"indices must be int32 or int64, got {indices.dtype.name}")
        if not lead:
            return ()
        if not indices.shape or _broadcast(data.shape[0], indices.shape[0]) == 0:
            raise self._error(f"the leading dims of data {data.shape} and indices {indices.shape} do not broadcast")
        return (_broadcast(data.shape[0], indices.shape[0]),)

    def _compile(self, inputs, device):
        dynamic = inputs[0].shape[self.axis] < 0
        gather = self._gather_shared if self.num_elementwise_dims else self._gather_plain

        def run(xs):
            data, indices = xs
            safe, outside = self._indices(indices, data.shape[self.axis], dynamic)
            return [gather(data, safe, outside)]
        return run

    def _indices(self, indices, size: int, dynamic: bool):
        """(indices clamped into range as int64, mask of the out-of-range ones)."""
        index = indices.to(torch.int64)
        if dynamic and bool((index < 0).any()):
            raise self._error("a negative index into a dimension of dynamic length is undefined in TensorRT")
        index = torch.where(index < 0, index + size, index)
        outside = (index < 0) | (index >= size)
        return index.clamp(0, max(size - 1, 0)), outside

    def _gather_plain(self, data, index, outside):
        axis = self.axis
        out = data.index_select(axis, index.flatten())
        out = out.reshape(data.shape[:axis] + index.shape + data.shape[axis + 1:])
        mask = outside.reshape((1,) * axis + tuple(index.shape) + (1,) * (data.dim() - axis - 1))
        return out.masked_fill(mask, 0)

    def _gather_shared(self, data, index, outside):
        axis, n = self.axis, max(data.shape[0], index.shape[0])
        data = data.expand(n, *data.shape[1:])
        index, outside = index.expand(n, *index.shape[1:]), outside.expand(n, *index.shape[1:])
        before, after = tuple(data.shape[1:axis]), tuple(data.shape[axis + 1:])
        rows = torch.arange(n, device=data.device)[:, None]
        picked = data.movedim(axis, 1)[rows, index.reshape(n, -1)]         # [n, m, *before, *after]
        picked = picked.reshape((n,) + tuple(index.shape[1:]) + before + after)
        k, b = index.dim() - 1, len(before)
        order = [0, *range(1 + k, 1 + k + b), *range(1, 1 + k), *range(1 + k + b, picked.dim())]
        mask = outside.reshape((n,) + (1,) * b + tuple(index.shape[1:]) + (1,) * len(after))
        return picked.permute(order).masked_fill(mask, 0)


class ITopKLayer(ILayer):
    """The ``k`` largest (``MAX``) or smallest (``MIN``) values along the one axis of ``axes``, sorted,
    and their indices. K ≤ 3840; the axis is one of the last four. Equal values: lower index first."""

    _type = LayerType.TOPK
    op = Attr(TopKOperation.MAX, lambda v: coerce(v, TopKOperation))
    k = Attr(1, int)
    axes = Attr(1, int)
    indices_type = Attr(DataType.INT32, _index_type)

    def __init__(self, network, inputs):
        super().__init__(network, inputs, num_outputs=2)

    def _axis(self, rank: int) -> int:
        axes = self.axes
        if axes <= 0 or axes & (axes - 1) or axes >= 1 << rank:
            raise self._error(f"axes must have exactly one bit set below the rank {rank}, got {axes:#b}")
        axis = axes.bit_length() - 1
        if axis < rank - 4:
            raise self._error(f"the top-k axis must be one of the last four dimensions, got axis {axis} of {rank}")
        return axis

    def _infer(self, inputs):
        (x,) = inputs
        axis = self._axis(len(x.shape))
        if not 0 < self.k <= MAX_TOPK:
            raise self._error(f"k must be in 1..{MAX_TOPK} (TensorRT's limit), got {self.k}")
        if x.shape[axis] >= 0 and self.k > x.shape[axis]:
            raise self._error(f"k = {self.k} is larger than the {x.shape[axis]} values along axis {axis}")
        shape = x.shape[:axis] + (self.k,) + x.shape[axis + 1:]
        return [TensorInfo(shape, x.dtype), TensorInfo(shape, self.indices_type)]

    def _compile(self, inputs, device):
        axis, k, largest = self._axis(len(inputs[0].shape)), self.k, self.op == TopKOperation.MAX
        index_dtype = TORCH_DTYPES[self.indices_type]

        def run(xs):
            if xs[0].shape[axis] < k:
                raise self._error(f"k = {k} is larger than the {xs[0].shape[axis]} values along axis {axis}")
            values, indices = torch.sort(xs[0], dim=axis, descending=largest, stable=True)
            return [values.narrow(axis, 0, k), indices.narrow(axis, 0, k).to(index_dtype)]
        return run


class IScatterLayer(ILayer):
    """``ScatterMode.ND`` (ONNX ScatterND): a copy of ``data`` with ``data[indices[i]] = updates[i]``.

    ``indices`` [..., q] holds q-tuples addressing the first q dims of data; ``updates`` has shape
    ``indices.shape[:-1] + data.shape[q:]``. Duplicate, negative or out-of-range indices are errors
    (TensorRT leaves their result undefined).
    """

    _type = LayerType.SCATTER
    mode = Attr(ScatterMode.ND, lambda v: coerce(v, ScatterMode))
    axis = Attr(0, int)

    def _infer(self, inputs):
        data, indices, updates = inputs
        depth = indices.shape[-1] if indices.shape else -1
        if indices.dtype not in _INDEX_TYPES or not 0 < depth <= len(data.shape):
            raise self._error(f"indices must be int32/int64 [..., q] with q known and ≤ rank {len(data.shape)}, "
                              f"got {indices.dtype.name} {indices.shape}")
        expected = indices.shape[:-1] + data.shape[depth:]
        if updates.dtype != data.dtype or len(updates.shape) != len(expected) or any(
                a >= 0 and b >= 0 and a != b for a, b in zip(updates.shape, expected)):
            raise self._error(f"updates must be {data.dtype.name} {expected}, got {updates.dtype.name} {updates.shape}")
        return [data]

    def _compile(self, inputs, device):
        def run(xs):
            data, indices, updates = xs
            depth = indices.shape[-1]
            index = indices.reshape(-1, depth).to(torch.int64)
            self._check_indices(index, data.shape[:depth])
            out = data.clone()
            out[tuple(index.t())] = updates.reshape((index.shape[0],) + tuple(data.shape[depth:]))
            return [out]
        return run

    def _check_indices(self, index, bounds) -> None:
        limits = torch.tensor(tuple(bounds), dtype=torch.int64, device=index.device)
        if bool(((index < 0) | (index >= limits)).any()):
            raise self._error(f"scatter indices outside the data's dims {tuple(bounds)} are undefined in TensorRT")
        if torch.unique(index, dim=0).shape[0] != index.shape[0]:
            raise self._error("duplicate scatter indices are undefined in TensorRT")


class INMSLayer(ILayer):
    """Non-maximum suppression per batch item and class (inputs: Boxes, Scores, MaxOutputBoxesPerClass,
    optional IoUThreshold and ScoreThreshold, added with ``set_input(3 | 4, t)``; defaults 0.0).

    Boxes float [B, N, 4] (shared by the classes) or [B, N, C, 4]; Scores [B, N, C]. Per item and class the
    boxes whose score is strictly above ScoreThreshold are taken in decreasing score (the best
    ``topk_box_limit`` of them); a box is selected if its IoU with every box already selected is
    ≤ IoUThreshold, until MaxOutputBoxesPerClass are selected. Outputs: SelectedIndices int32/int64
    [M, 3] of (batch, class, box), by batch then decreasing score (data-dependent M), and NumOutputBoxes,
    a 0-D int32. IoU, ties and box corners: see the module docstring; CORNER_PAIRS accepts any two
    diagonal corners, CENTER_SIZES is (xc, yc, w, h).
    """

    _type = LayerType.NMS
    bounding_box_format = Attr(BoundingBoxFormat.CORNER_PAIRS, lambda v: coerce(v, BoundingBoxFormat))
    topk_box_limit = Attr(MAX_NMS_TOPK_LIMIT, int)
    indices_type = Attr(DataType.INT32, _index_type)

    def __init__(self, network, inputs):
        super().__init__(network, inputs, num_outputs=2)

    def _infer(self, inputs):
        if len(inputs) not in (3, 4, 5):
            raise self._error(f"NMS takes 3 to 5 inputs, got {len(inputs)}")
        boxes, scores, limit = inputs[:3]
        per_class = len(boxes.shape) == 4
        if boxes.dtype not in _FLOAT_TYPES or scores.dtype != boxes.dtype or len(scores.shape) != 3 or \
                len(boxes.shape) not in (3, 4) or boxes.shape[-1] != 4:
            raise self._error(f"boxes must be float [B, N, 4] or [B, N, C, 4] and scores [B, N, C] of the same "
                              f"type, got {boxes.dtype.name} {boxes.shape} and {scores.dtype.name} {scores.shape}")
        if per_class and boxes.shape[2] != scores.shape[2]:
            raise self._error(f"per-class boxes {boxes.shape} need as many classes as scores {scores.shape}")
        self._check_scalars(limit, inputs[3:])
        if not 0 < self.topk_box_limit <= MAX_NMS_TOPK_LIMIT:
            raise self._error(f"topk_box_limit must be in 1..{MAX_NMS_TOPK_LIMIT}, got {self.topk_box_limit}")
        return [TensorInfo((-1, 3), self.indices_type), TensorInfo((), DataType.INT32)]

    def _check_scalars(self, limit: TensorInfo, thresholds: list[TensorInfo]) -> None:
        if limit.shape != () or limit.dtype != DataType.INT32:
            raise self._error(f"MaxOutputBoxesPerClass must be a 0-D int32, got {limit.dtype.name} {limit.shape}")
        for info in thresholds:
            if info.shape != () or info.dtype != DataType.FLOAT:
                raise self._error(f"IoU and score thresholds must be 0-D float32, got {info.dtype.name} {info.shape}")

    def _compile(self, inputs, device):
        index_dtype = TORCH_DTYPES[self.indices_type]

        def run(xs):
            limit, iou, score = self._scalars(xs)
            boxes = self._corners(xs[0].float())
            rows = [self._select_item(b, boxes[b], xs[1][b].float(), limit, iou, score)
                    for b in range(xs[1].shape[0])]
            selected = torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)
            count = torch.tensor(selected.shape[0], dtype=torch.int32, device=selected.device)
            return [selected.to(index_dtype), count]
        return run

    def _scalars(self, xs) -> tuple[int, float, float]:
        limit = int(xs[2].item())
        iou = float(xs[3].item()) if len(xs) > 3 else 0.0
        score = float(xs[4].item()) if len(xs) > 4 else 0.0
        if limit < 0 or not 0.0 <= iou <= 1.0:
            raise self._error(f"MaxOutputBoxesPerClass must be ≥ 0 and IoUThreshold in [0, 1], got {limit}, {iou}")
        return limit, iou, score

    def _corners(self, boxes):
        """Boxes as (x1, y1, x2, y2) with x1 ≤ x2 and y1 ≤ y2, shape [B, N, C or 1, 4]."""
        if boxes.dim() == 3:
            boxes = boxes[:, :, None, :]
        if self.bounding_box_format == BoundingBoxFormat.CENTER_SIZES:
            centre, half = boxes[..., :2], boxes[..., 2:] / 2
            boxes = torch.cat((centre - half, centre + half), dim=-1)
        low = torch.minimum(boxes[..., :2], boxes[..., 2:])
        return torch.cat((low, torch.maximum(boxes[..., :2], boxes[..., 2:])), dim=-1)

    def _select_item(self, item: int, boxes, scores, limit: int, iou: float, threshold: float):
        """Rows (item, class, box) selected in one batch item, by decreasing score (ties: class, index)."""
        chosen = []
        for cls in range(scores.shape[1]):
            kept = self._select_class(boxes[:, min(cls, boxes.shape[1] - 1)], scores[:, cls], limit, iou, threshold)
            chosen.append(torch.stack((torch.full_like(kept, item), torch.full_like(kept, cls), kept), dim=1))
        rows = torch.cat(chosen)
        order = torch.sort(scores[rows[:, 2], rows[:, 1]], descending=True, stable=True).indices
        return rows[order]

    def _select_class(self, boxes, scores, limit: int, iou: float, threshold: float):
        """Greedy selection for one class: int64 box indices in decreasing score."""
        candidates = torch.nonzero(scores > threshold).flatten()
        by_score = torch.sort(scores[candidates], descending=True, stable=True).indices
        order = candidates[by_score][:self.topk_box_limit]
        kept = []
        while order.numel() > 0 and len(kept) < limit:
            best, order = order[0], order[1:]
            kept.append(best)
            order = order[plain_iou(boxes[best], boxes[order]) <= iou]
        return torch.stack(kept) if kept else torch.zeros(0, dtype=torch.int64, device=boxes.device)


def plain_iou(box, boxes):
    """IoU of one (x1, y1, x2, y2) box [4] with boxes [M, 4] (corners ordered), no "+1": [M]; 0 for a zero union."""
    width = (torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0])).clamp(min=0)
    height = (torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1])).clamp(min=0)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), torch.zeros_like(union))
