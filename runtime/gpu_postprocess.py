"""detect.py's post-processing batched over images, without per-box Python loops (any torch device).

Same formats and order as :mod:`runtime.postprocess` (score > confidence_threshold → stable sort by score,
descending → first top_k → decode → greedy NMS with "+1 pixel" areas, a box removed when its IoU with a
kept box is > nms_threshold → first keep_top_k), for a batch loc [N, P, 4], conf [N, P, 2], landms [N, P, 10].

Exact greedy NMS in vectorised passes: with candidates in score order and S[i, j] = (IoU(i, j) > thr) for
i < j, greedy NMS keeps j exactly when no kept i < j has S[i, j]. That rule, ``keep = f(keep)``, has the
greedy result as its only fixed point, and iterating it from "keep all" fixes at least one more leading
candidate per pass (keep[j] depends only on keep[:j]), so the iteration reaches it; in practice in as many
passes as the longest chain of "suppressed, so no longer suppressing" (a handful). Each pass is one batched
matrix product; convergence is checked every few passes.
"""

from __future__ import annotations

import torch

from runtime.options import DetectionOptions

_PASSES_PER_CHECK = 4
_MAX_MATRIX_ELEMENTS = 1 << 27   # IoU entries per chunk of images (bounds the temporary memory)


def iou_matrix_plus_one(boxes: torch.Tensor) -> torch.Tensor:
    """boxes [N, K, 4] (x1, y1, x2, y2) → IoU [N, K, K] with "+1 pixel" areas.

    Row i, column j is the IoU as :func:`runtime.postprocess.iou_plus_one` computes it for box i against j
    (same operations in the same order, so equal bit for bit).
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    width = (torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :]) + 1)
    height = (torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :]) + 1)
    inter = width.clamp_(min=0) * height.clamp_(min=0)
    return inter / (area[:, :, None] + area[:, None, :] - inter)


def greedy_nms_sorted(boxes: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS of boxes [N, K, 4] already sorted by score (descending); valid [N, K] bool.

    Returns keep [N, K] bool: exactly the boxes sequential greedy NMS keeps among the valid ones.
    """
    n, k = valid.shape
    keep = torch.empty_like(valid)
    per_chunk = max(1, _MAX_MATRIX_ELEMENTS // max(k * k, 1))
    for start in range(0, n, per_chunk):
        part = slice(start, start + per_chunk)
        keep[part] = _nms_chunk(boxes[part], valid[part], threshold)
    return keep


def _nms_chunk(boxes: torch.Tensor, valid: torch.Tensor, threshold: float) -> torch.Tensor:
    k = valid.shape[1]
    matmul_dtype = torch.float16 if boxes.is_cuda else torch.float32   # 0/1 entries: exact in float16
    later = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu_(1)
    suppresses = ((iou_matrix_plus_one(boxes) > threshold) & later & valid[:, :, None]).to(matmul_dtype)
    keep = valid.clone()
    while True:
        for _ in range(_PASSES_PER_CHECK):
            keep = _pass(suppresses, keep, valid)
        following = _pass(suppresses, keep, valid)
        if torch.equal(following, keep):
            return keep
        keep = following


def _pass(suppresses: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """One application of the greedy rule: j kept iff valid and no kept i < j suppresses it."""
    hits = torch.bmm(keep[:, None, :].to(suppresses.dtype), suppresses)[:, 0]
    return valid & (hits == 0)


def detect_faces_batch(loc: torch.Tensor, conf: torch.Tensor, landms: torch.Tensor, priors: torch.Tensor,
                       width: int, height: int, options: DetectionOptions = DetectionOptions(),
                       variances=(0.1, 0.2)) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`runtime.postprocess.detect_faces`.

    loc [N, P, 4], conf [N, P, 2], landms [N, P, 10], priors [P, 4] (cx, cy, w, h, normalised); ``width``,
    ``height``: network input size in pixels. Returns (dets float32 [N, D, 15], counts int64 [N]): image n's
    detections are ``dets[n, :counts[n]]`` (x1, y1, x2, y2, score, five (x, y)), by score descending;
    D = min(keep_top_k, candidates) and rows past the count are zero.
    """
    scores = conf[..., 1]
    passing = scores > options.confidence_threshold
    ranked = torch.where(passing, scores, torch.full_like(scores, -1.0))   # failing ones sort last
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    k = min(options.top_k, int(passing.sum(dim=1).max()) if scores.numel() else 0)
    order = order[:, :k]
    valid = torch.gather(passing, 1, order)
    boxes, points = _decode(loc, landms, priors, order, width, height, variances)
    top_scores = torch.gather(scores, 1, order)
    keep = greedy_nms_sorted(boxes, valid, options.nms_threshold)
    rows = torch.cat((boxes, top_scores[..., None], points), dim=2)
    return _first_kept(rows, keep, options.keep_top_k)


def _decode(loc, landms, priors, order, width: int, height: int, variances):
    """Boxes [N, K, 4] and landmarks [N, K, 10] in pixels for the candidates ``order`` [N, K]."""
    pick = lambda t: torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
    p = priors[order]
    offsets = pick(loc)
    centre = p[..., :2] + offsets[..., :2] * variances[0] * p[..., 2:]
    size = p[..., 2:] * torch.exp(offsets[..., 2:] * variances[1])
    top_left = centre - size / 2
    scale = torch.tensor([width, height], dtype=loc.dtype, device=loc.device)
    boxes = torch.cat((top_left, top_left + size), dim=2) * scale.repeat(2)
    marks = pick(landms).reshape(*order.shape, 5, 2)
    points = (p[..., None, :2] + marks * variances[0] * p[..., None, 2:]).reshape(*order.shape, 10)
    return boxes, points * scale.repeat(5)


def _first_kept(rows: torch.Tensor, keep: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack the kept rows of each image to the front, at most ``limit`` of them: ([N, D, C], counts [N])."""
    n, k, c = rows.shape
    depth = min(limit, k)
    slot = torch.cumsum(keep, dim=1) - 1
    chosen = keep & (slot < depth)
    out = torch.zeros(n, depth + 1, c, dtype=rows.dtype, device=rows.device)  # last slot takes the rest
    target = torch.where(chosen, slot, torch.full_like(slot, depth))
    out.scatter_(1, target[..., None].expand(-1, -1, c), rows)
    return out[:, :depth], chosen.sum(dim=1)
