"""Decoding and detect.py's post-processing, batched over images, exact, on the backend's device.

Formats:

* priors: float32 [P, 4] of (cx, cy, w, h), normalised to [0, 1] (see :mod:`runtime.priors`);
* network outputs of a batch: loc [N, P, 4], conf [N, P, 2] (after softmax; column 1 is the face score),
  landms [N, P, 10] (five (x, y) offsets);
* boxes: (x1, y1, x2, y2) in pixels of the network input;
* detections: float32 [N, D, 15] rows of :mod:`retinaface_trt.detections` (box, score, landmarks), sorted by score
  descending, with counts [N]: image n's detections are ``dets[n, :counts[n]]``, the rows after them are zero.
  D = min(keep_top_k, top_k, P) whatever the data, so shapes are fixed per input size.

Order (detect.py's; decoding after the cheap filters changes no value): score > confidence_threshold →
sort by score, descending (equal scores: lower prior index first) → first top_k → decode → greedy NMS → first
keep_top_k. NMS is detect.py's: the highest remaining box is kept and a box is removed when its IoU with a kept
box is not ≤ nms_threshold (so an IoU exactly at the threshold survives, and a NaN IoU removes), with areas
counted as (x2 − x1 + 1)·(y2 − y1 + 1). Decoding and NMS always run in float32; the arithmetic follows the
original operation by operation, so results agree with it to the last bit on the same device.

The strategy is chosen inside :func:`detect_faces_batch` by the outputs' device:

* CPU: NumPy on the candidates only; greedy NMS one kept box per step, vectorised over the remaining ones
  (detect.py's own algorithm, the fastest on a CPU);
* CUDA: fixed shapes and no host synchronisation, so the whole chain can be replayed as a CUDA graph: a
  stable sort of every score, the first top_k decoded, and NMS by the Triton kernels of
  :mod:`runtime._nms_triton` (an IoU bitmask, then one sequential greedy pass per image on the GPU);
* CUDA without Triton: the sorted candidates are copied to the host (one synchronisation) for the CPU NMS.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from retinaface_trt import detections
from retinaface_trt.thresholds import Thresholds


def _xp(array):
    """The array namespace of ``array``: numpy for ndarrays, torch for tensors."""
    return np if isinstance(array, np.ndarray) else torch


def _exp(values):
    """torch's exp, also for NumPy input: NumPy's float32 exp differs from it in the last bit for about 40%
    of values, and the original decodes with torch."""
    if isinstance(values, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(values)).exp().numpy()
    return values.exp()


def decode_boxes(loc, priors, variances=(0.1, 0.2)):
    """loc [..., 4] offsets + priors [..., 4] (cx, cy, w, h) → boxes [..., 4] (x1, y1, x2, y2), normalised.

    NumPy arrays or torch tensors; leading dimensions broadcast (one image or a batch).
    """
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * _exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return _xp(loc).concatenate((top_left, top_left + size), axis=-1)


def decode_landmarks(landms, priors, variances=(0.1, 0.2)):
    """landms [..., 10] offsets + priors [..., 4] → five (x, y) points per prior, [..., 10], normalised."""
    offsets = landms.reshape(*landms.shape[:-1], 5, 2)
    points = priors[..., None, :2] + offsets * variances[0] * priors[..., None, 2:]
    return points.reshape(*landms.shape)


def box_iou(a, b):
    """IoU of every box of ``a`` [M, 4] with every box of ``b`` [K, 4], (x1, y1, x2, y2): [M, K].

    detect.py's "+1 pixel" convention: widths are x2 − x1 + 1, overlaps clipped at 0. NumPy arrays or torch
    tensors, in their own dtype. Degenerate boxes give what the formula gives (0/0 is NaN), as in detect.py.
    """
    return _overlaps(_columns(a, (slice(None), None)), _columns(b, (None, slice(None))))


def _columns(boxes, where):
    """(x1, y1, x2, y2, area) of boxes [M, 4], each indexed by ``where`` (to broadcast them against others)."""
    x1, y1, x2, y2 = (boxes[:, i][where] for i in range(4))
    return x1, y1, x2, y2, (x2 - x1 + 1) * (y2 - y1 + 1)


def _overlaps(a, b):
    """The IoU formula on broadcastable columns (x1, y1, x2, y2, area) of two sets of boxes."""
    ax1, ay1, ax2, ay2, area_a = a
    bx1, by1, bx2, by2, area_b = b
    xp = _xp(ax1) if isinstance(ax1, (np.ndarray, torch.Tensor)) else _xp(bx1)
    w = (xp.minimum(ax2, bx2) - xp.maximum(ax1, bx1) + 1).clip(min=0)
    h = (xp.minimum(ay2, by2) - xp.maximum(ay1, by1) + 1).clip(min=0)
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def greedy_nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """detect.py's greedy NMS of float32 boxes [K, 4] already in score order → int64 indices kept, in order."""
    columns = _columns(boxes, slice(None))
    order, keep = np.arange(len(boxes)), []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[_overlaps([c[best] for c in columns], [c[rest] for c in columns]) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def nms_sorted(boxes: torch.Tensor, counts: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS per image of boxes [N, K, 4] sorted by score, of which the first counts[n] are candidates.

    Returns keep [N, K] bool: exactly the candidates detect.py's NMS keeps. On CUDA with Triton nothing waits
    on the host; elsewhere the candidates are processed on the host.
    """
    kernels = _triton_nms() if boxes.is_cuda else None
    if kernels is not None:
        try:
            return kernels.nms_sorted(boxes, counts, float(threshold))
        except Exception as error:     # noqa: BLE001 - a GPU or driver Triton cannot compile for: exact fallback
            _disable_triton(error)
    host, limits = boxes.detach().cpu().numpy(), counts.cpu().tolist()
    keep = np.zeros(boxes.shape[:2], dtype=bool)
    for n, count in enumerate(limits):
        keep[n, greedy_nms(host[n, :count], threshold)] = True
    return torch.from_numpy(keep).to(boxes.device)


_TRITON = {"disabled": False}


def _triton_nms():
    """:mod:`runtime._nms_triton`, or None where Triton is not installed (or failed on this machine)."""
    if _TRITON["disabled"]:
        return None
    try:
        from runtime import _nms_triton
    except ImportError:
        return None
    return _nms_triton


def _disable_triton(error: Exception) -> None:
    logging.getLogger("retinaface_trt").warning(
        "the Triton NMS kernels failed here (%s: %s); NMS runs on the host from now on (exact, one "
        "synchronisation per batch)", type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    _TRITON["disabled"] = True


def detect_faces_batch(loc: torch.Tensor, conf: torch.Tensor, landms: torch.Tensor, priors: torch.Tensor,
                       width: int, height: int, options: Thresholds = Thresholds(),
                       variances=(0.1, 0.2)) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's raw outputs → (detections float32 [N, D, 15], counts int64 [N]) on the outputs' device.

    ``width`` and ``height`` are the network input size in pixels; see the module docstring for the formats.
    """
    if loc.is_cuda:
        return _detect_device(loc.float(), conf.float(), landms.float(), priors, width, height, options, variances)
    arrays = (t.detach().float().numpy() for t in (loc, conf, landms, priors))
    dets, counts = _detect_host(*arrays, width, height, options, variances)
    return torch.from_numpy(dets), torch.from_numpy(counts)


def detect_faces(loc, conf, landms, priors, width: int, height: int,
                 options: Thresholds = Thresholds(), variances=(0.1, 0.2)) -> torch.Tensor:
    """One image's outputs (loc [P, 4], conf [P, 2], landms [P, 10]) → its detections [K, 15] only."""
    dets, counts = detect_faces_batch(loc[None], conf[None], landms[None], priors, width, height, options,
                                      variances)
    return dets[0, :int(counts[0])]


def _depth(options: Thresholds, priors: int) -> tuple[int, int]:
    """(K candidates decoded at most, D detections kept at most), fixed for an input size."""
    k = min(options.top_k, priors)
    return k, min(options.keep_top_k, k)


def _detect_host(loc, conf, landms, priors, width, height, options, variances):
    """NumPy strategy: per image, only the candidates are sorted, decoded and suppressed."""
    n, p = conf.shape[:2]
    _, depth = _depth(options, p)
    dets = np.zeros((n, depth, detections.WIDTH), dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    scale = np.array([width, height], dtype=np.float32)
    for i in range(n):
        rows = _image_detections(loc[i], conf[i, :, 1], landms[i], priors, scale, options, variances)
        counts[i] = len(rows)
        dets[i, :len(rows)] = rows
    return dets, counts


def _image_detections(loc, scores, landms, priors, scale, options, variances) -> np.ndarray:
    candidates = np.flatnonzero(scores > options.confidence_threshold)
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")][:options.top_k]
    chosen = priors[candidates]
    boxes = decode_boxes(loc[candidates], chosen, variances) * np.tile(scale, 2)
    points = decode_landmarks(landms[candidates], chosen, variances) * np.tile(scale, 5)
    keep = greedy_nms(boxes, options.nms_threshold)[:options.keep_top_k]
    return detections.join(boxes[keep], scores[candidates][keep], points[keep], np)


def _detect_device(loc, conf, landms, priors, width, height, options, variances):
    """Fixed-shape strategy: every image sorts all P scores; the first K are decoded and suppressed."""
    k, depth = _depth(options, conf.shape[1])
    scores = conf[..., 1]
    passing = scores > options.confidence_threshold
    ranked = torch.where(passing, scores, torch.full_like(scores, -1.0))     # failing ones sort last
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :k]
    counts = passing.sum(dim=1).clamp_(max=k)
    pick = lambda t: torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1]))   # noqa: E731
    chosen = priors[order]
    boxes = decode_boxes(pick(loc), chosen, variances) * _pixel_scale(width, height, 2, str(loc.device))
    points = decode_landmarks(pick(landms), chosen, variances) * _pixel_scale(width, height, 5, str(loc.device))
    keep = nms_sorted(boxes, counts, options.nms_threshold)
    rows = detections.join(boxes, torch.gather(scores, 1, order), points, torch)
    return _first_kept(rows, keep, depth)


@functools.lru_cache(maxsize=64)
def _pixel_scale(width: int, height: int, repeats: int, device: str) -> torch.Tensor:
    """(W, H) repeated, float32 on ``device``; cached, since no host copy may happen during a graph capture."""
    return torch.tensor([width, height] * repeats, dtype=torch.float32, device=device)


def _first_kept(rows: torch.Tensor, keep: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack the kept rows of each image to the front, at most ``depth``: ([N, depth, C] zero-padded, counts [N])."""
    n, _, c = rows.shape
    slot = torch.cumsum(keep, dim=1) - 1
    chosen = keep & (slot < depth)
    out = torch.zeros(n, depth + 1, c, dtype=rows.dtype, device=rows.device)   # the last slot takes the rest
    target = torch.where(chosen, slot, torch.full_like(slot, depth))
    out.scatter_(1, target[..., None].expand(-1, -1, c), rows)
    return out[:, :depth], chosen.sum(dim=1)
