"""The WIDER FACE evaluation protocol, as the official evaluation tool computes it.

Inputs are prediction rows ``(x, y, w, h, score)`` per image (see :mod:`runtime.evaluation.widerface`) and
:class:`~runtime.evaluation.widerface.GroundTruthImage` records. For each setting (easy / medium / hard):

1. scores are min-max normalised over the whole prediction set (every image together);
2. boxes ``(x, y, w, h)`` become ``(x, y, x + w, y + h)`` and IoU uses the "+1 pixel" convention
   (area = (x2 - x1 + 1)·(y2 - y1 + 1)); each prediction is matched to its highest-IoU ground-truth box
   (first one on ties) when that IoU is ≥ 0.5;
3. a prediction matched to a face the setting does not keep is dropped from the proposals (neither true
   nor false positive); one matched to a kept face recalls it (once);
4. at each of 1000 thresholds t = 1 − k/1000 (k = 1..1000) the proposals with normalised score ≥ t and
   the faces they recall are summed over images; precision = recalled ÷ proposals, recall = recalled ÷
   (kept faces in the images evaluated);
5. AP is the VOC area under the precision envelope.

As in the official tool, an image with no ground-truth box or no prediction adds its kept faces to the
face count but nothing to the proposals: predictions on an image without faces are not counted.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from runtime.evaluation.widerface import SETTINGS, GroundTruthImage
from runtime.postprocess import box_iou

IOU_THRESHOLD = 0.5
NUM_THRESHOLDS = 1000
SCORE = 4       # the score's column in WIDER FACE's prediction rows [N, 5] (x, y, w, h, score)


def score_thresholds(n: int = NUM_THRESHOLDS) -> np.ndarray:
    """float64 [n]: 1 − k/n for k = 1..n (0.999 … 0.0 for n = 1000), highest first."""
    return 1 - np.arange(1, n + 1) / n


def normalise_scores(predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Min-max normalise column 4 of every [N, 5] array over all images together (copies).

    If every score is equal there is nothing to scale: the scores become 1.0 (the official tool
    divides by zero there).
    """
    scores = [rows[:, SCORE] for rows in predictions.values() if len(rows)]
    low, high = (min(s.min() for s in scores), max(s.max() for s in scores)) if scores else (0.0, 1.0)
    span = high - low
    normalised = {}
    for key, rows in predictions.items():
        rows = np.array(rows, dtype=np.float64).reshape(-1, 5)
        rows[:, SCORE] = (rows[:, SCORE] - low) / span if span > 0 else 1.0
        normalised[key] = rows
    return normalised


def _corners(xywh: np.ndarray) -> np.ndarray:
    """[N, 4+] (x, y, w, h, ...) -> [N, 4] (x, y, x + w, y + h), as the official tool converts both sides."""
    xywh = np.asarray(xywh, dtype=np.float64)
    return np.column_stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]])


def match_image(rows: np.ndarray, gt_boxes: np.ndarray, keep: np.ndarray,
                iou_threshold: float = IOU_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's predictions to its ground truth.

    rows:     float [N, 5] (x, y, w, h, score), sorted by score, highest first
    gt_boxes: float [K, 4] (x, y, w, h), K ≥ 1
    keep:     int [M] 0-based indices of the faces the setting counts; the others are ignored
    Returns (recalled [N] int64: kept faces recalled by rows 0..i,
             counted [N] bool: row i is a proposal, i.e. not matched to an ignored face).
    """
    # detect.py's IoU ("+1" areas) in float64; the official tool counts no overlap as 0, where 0/0 is NaN
    overlaps = np.nan_to_num(box_iou(_corners(rows), _corners(gt_boxes)))
    best = overlaps.argmax(axis=1)
    matched = overlaps[np.arange(len(rows)), best] >= iou_threshold
    kept = np.zeros(len(gt_boxes), dtype=bool)
    kept[keep] = True
    hits = np.flatnonzero(matched & kept[best])
    # Only the first row to match a kept face recalls it; later ones stay false positives.
    _, first = np.unique(best[hits], return_index=True)
    new_face = np.zeros(len(rows), dtype=np.int64)
    new_face[hits[first]] = 1
    return np.cumsum(new_face), ~(matched & ~kept[best])


def image_pr_counts(scores: np.ndarray, recalled: np.ndarray, counted: np.ndarray,
                    thresholds: np.ndarray) -> np.ndarray:
    """Per threshold, (proposals, recalled faces) among the rows with score ≥ threshold.

    scores [N] sorted highest first; recalled, counted [N] from :func:`match_image`;
    thresholds [T]. Returns float64 [T, 2].
    """
    n_above = len(scores) - np.searchsorted(scores[::-1], thresholds, side="left")
    last = np.maximum(n_above - 1, 0)
    proposals = np.where(n_above > 0, np.cumsum(counted)[last], 0)
    faces = np.where(n_above > 0, recalled[last], 0)
    return np.column_stack([proposals, faces]).astype(np.float64)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC AP: area under the precision envelope (max precision at any higher recall).

    recall, precision: float [T], recall non-decreasing.
    """
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def evaluate_setting(predictions: Mapping[str, np.ndarray], ground_truth: Mapping[str, GroundTruthImage],
                     setting: str, thresholds: np.ndarray) -> dict:
    """Score normalised predictions {key: [N, 5] sorted} against ``ground_truth`` (same keys) for a setting.

    Returns {"ap": float, "faces": int, "precision": [T], "recall": [T]}.
    """
    counts = np.zeros((len(thresholds), 2))
    faces = 0
    for key, rows in predictions.items():
        image = ground_truth[key]
        faces += len(image.keep[setting])
        if len(rows) == 0 or len(image.boxes) == 0:
            continue
        recalled, counted = match_image(rows, image.boxes, image.keep[setting])
        counts += image_pr_counts(rows[:, SCORE], recalled, counted, thresholds)
    precision = np.divide(counts[:, 1], counts[:, 0], out=np.zeros(len(counts)), where=counts[:, 0] > 0)
    recall = counts[:, 1] / faces if faces else np.zeros(len(counts))
    return {"ap": voc_ap(recall, precision), "faces": faces, "precision": precision, "recall": recall}


def evaluate_predictions(predictions: Mapping[str, np.ndarray],
                         ground_truth: Mapping[str, GroundTruthImage],
                         num_thresholds: int = NUM_THRESHOLDS) -> dict[str, dict]:
    """Evaluate {key: [N, 5] rows (x, y, w, h, raw score)} on the images of ``predictions`` only.

    Every key must be in ``ground_truth``. Rows are normalised and sorted here.
    Returns {setting: {"ap", "faces", "precision", "recall"}} for easy, medium and hard.
    """
    normalised = normalise_scores(predictions)
    ordered = {k: r[np.argsort(-r[:, SCORE], kind="stable")] for k, r in normalised.items()}
    thresholds = score_thresholds(num_thresholds)
    return {s: evaluate_setting(ordered, ground_truth, s, thresholds) for s in SETTINGS}
