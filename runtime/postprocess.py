"""Decoding and detect.py's post-processing, as small pure functions on torch tensors (any device).

Formats:

* priors: float32 [P, 4] of (cx, cy, w, h), normalised to [0, 1] (see :mod:`runtime.priors`);
* network outputs of one image: loc [P, 4], conf [P, 2] (after softmax; column 1 is the face score),
  landms [P, 10] (five (x, y) offsets);
* boxes: (x1, y1, x2, y2); detections: float32 [K, 15] = x1, y1, x2, y2, score, then five landmark
  (x, y) pairs, in network-input pixels, sorted by score descending.

Order (detect.py's, with decoding moved after the cheap filters, which does not change any value):
score > confidence_threshold → sort descending → first top_k → decode → NMS → first keep_top_k.
The arithmetic follows the original operation by operation so that float32 results agree to the last bits.
"""

from __future__ import annotations

import torch

from runtime.options import DetectionOptions


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances=(0.1, 0.2)) -> torch.Tensor:
    """loc [P, 4] offsets + priors [P, 4] (cx, cy, w, h) → boxes [P, 4] (x1, y1, x2, y2), normalised."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat((top_left, top_left + size), dim=1)


def decode_landmarks(landms: torch.Tensor, priors: torch.Tensor, variances=(0.1, 0.2)) -> torch.Tensor:
    """landms [P, 10] offsets + priors [P, 4] → five (x, y) points per prior, [P, 10], normalised."""
    offsets = landms.reshape(-1, 5, 2)
    points = priors[:, None, :2] + offsets * variances[0] * priors[:, None, 2:]
    return points.reshape(-1, 10)


def iou_plus_one(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one box [4] with boxes [M, 4], areas counted as (x2 - x1 + 1)·(y2 - y1 + 1). Returns [M]."""
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    width = (torch.minimum(box[2], boxes[:, 2]) - torch.maximum(box[0], boxes[:, 0]) + 1).clamp_(min=0)
    height = (torch.minimum(box[3], boxes[:, 3]) - torch.maximum(box[1], boxes[:, 1]) + 1).clamp_(min=0)
    inter = width * height
    return inter / (area + areas - inter)


def nms_plus_one(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS: boxes [K, 4] (x1, y1, x2, y2) in pixels, scores [K] → int64 indices kept, by score.

    The highest-scoring remaining box is kept and every box whose :func:`iou_plus_one` with it is
    greater than ``threshold`` is removed (IoU exactly at the threshold survives). One step per kept box,
    each vectorised over the remaining candidates.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[iou_plus_one(boxes[best], boxes[rest]) <= threshold]
    if not keep:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return torch.stack(keep)


def detect_faces(loc, conf, landms, priors, width: int, height: int,
                 options: DetectionOptions = DetectionOptions(), variances=(0.1, 0.2)) -> torch.Tensor:
    """One image's raw outputs (see module docstring) → detections float32 [K, 15] in input pixels.

    ``width`` and ``height`` are the network input size the outputs belong to.
    """
    scores = conf[:, 1]
    candidates = torch.nonzero(scores > options.confidence_threshold).flatten()
    by_score = torch.sort(scores[candidates], descending=True, stable=True).indices[:options.top_k]
    candidates = candidates[by_score]
    kept_priors = priors[candidates]
    scale = torch.tensor([width, height], dtype=loc.dtype, device=loc.device)
    boxes = decode_boxes(loc[candidates], kept_priors, variances) * scale.repeat(2)
    points = decode_landmarks(landms[candidates], kept_priors, variances) * scale.repeat(5)
    keep = nms_plus_one(boxes, scores[candidates], options.nms_threshold)[:options.keep_top_k]
    return torch.cat((boxes[keep], scores[candidates][keep, None], points[keep]), dim=1)
