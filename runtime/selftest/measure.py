"""The engine's outputs against the reference's: faces, candidates, output errors (defined in
:mod:`runtime.selftest.checks`), for one input shape of a case.

Formats: raw outputs (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10]) and detections (float32 [K, 15] per
image: x1, y1, x2, y2, score, five (x, y), in network-input pixels), all on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retinaface_trt import detections as record
from runtime.selftest.checks import (CANDIDATE_SCORE, FACE_IOU, FACE_SCORE, LANDMARK_FRACTION, SCORE_MARGIN, Candidates,
                                     Faces)


@dataclass
class RunResult:
    """The measurements of one run shape: ``shape`` (N, H, W), ``batches`` (how many batches of different
    images), ``errors`` ({"abs", "rel"} per output, the worst; None for an engine with post-processing
    inside), ``faces`` and ``candidates`` (summed) and, with post-processing inside, the detection ``counts``
    per image of the engine and of the pipeline."""

    shape: tuple[int, int, int]
    errors: dict | None
    faces: Faces
    candidates: Candidates
    counts: dict | None = None
    batches: int = 1

    def add(self, other: "RunResult") -> "RunResult":
        """This run and ``other`` (the same shape, other images) as one."""
        errors = None if self.errors is None else {
            kind: {name: max(value, other.errors[kind][name]) for name, value in self.errors[kind].items()}
            for kind in self.errors}
        counts = None if self.counts is None else {k: v + other.counts[k] for k, v in self.counts.items()}
        return RunResult(self.shape, errors, self.faces.add(other.faces), self.candidates.add(other.candidates),
                         counts, self.batches + other.batches)

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "batches": self.batches, "errors": self.errors,
                "faces": self.faces.as_dict(), "candidates": self.candidates.as_dict(), "counts": self.counts}


# Faces, after the pipeline ---------------------------------------------------------------------------
def face_agreement(engine: list, reference: list) -> Faces:
    """Faces of per-image detections ``engine`` and ``reference`` (lists of float32 [K, 15], pixels)."""
    total = Faces()
    for mine, theirs in zip(engine, reference):
        total = total.add(_image_faces(mine, theirs))
    return total


def _image_faces(engine: torch.Tensor, reference: torch.Tensor) -> Faces:
    from runtime.compare import match_faces

    faces = lambda d: record.at_least(d, FACE_SCORE)                          # noqa: E731
    candidates = lambda d: record.at_least(d, FACE_SCORE - SCORE_MARGIN)      # noqa: E731
    found, score_r, points_r = match_faces(faces(reference), candidates(engine), FACE_IOU)
    kept, score_e, points_e = match_faces(faces(engine), candidates(reference), FACE_IOU)
    return Faces(len(faces(reference)), len(faces(engine)), found, kept, max(score_r, score_e),
                 max(points_r, points_e))


# Candidates, before NMS ------------------------------------------------------------------------------
def decoded_rows(outputs, priors: torch.Tensor, width: int, height: int, variances) -> torch.Tensor:
    """(loc, conf, landms) [N, P, ·] → every prior decoded, float32 [N, P, 15] in the detections' layout
    (x1, y1, x2, y2, score, five (x, y)) in network-input pixels, with the pipeline's decoding functions."""
    from runtime.postprocess import decode_boxes, decode_landmarks

    loc, conf, landms = (t.detach().float().cpu() for t in outputs)
    boxes = decode_boxes(loc, priors, variances) * torch.tensor([width, height] * 2, dtype=torch.float32)
    points = decode_landmarks(landms, priors, variances) * torch.tensor([width, height] * 5, dtype=torch.float32)
    return record.join(boxes, conf[..., 1], points, torch)


def candidate_agreement(engine: torch.Tensor, reference: torch.Tensor) -> Candidates:
    """Prior by prior: ``engine`` and ``reference`` decoded rows [N, P, 15] (see :func:`decoded_rows`)."""
    total = Candidates()
    for mine, theirs in zip(engine, reference):
        chosen = torch.maximum(record.scores(mine), record.scores(theirs)) >= CANDIDATE_SCORE
        total = total.add(_pairs(mine[chosen], theirs[chosen], _paired_iou(mine[chosen], theirs[chosen])))
    return total


def row_agreement(engine: list, reference: torch.Tensor) -> Candidates:
    """Each engine detection (per image [K, 15]) against its reference candidate (decoded rows [N, P, 15]):
    of the priors overlapping it with IoU ≥ FACE_IOU the one closest in score (a cluster of priors may share
    a box), else the one overlapping it most."""
    from runtime.postprocess import box_iou

    total = Candidates()
    for mine, theirs in zip(engine, reference):
        if len(mine) == 0:
            continue
        overlaps = torch.nan_to_num(box_iou(record.boxes(mine), record.boxes(theirs)), nan=0.0)          # [K, P]
        apart = (record.scores(mine)[:, None] - record.scores(theirs)[None, :]).abs()
        close = torch.where(overlaps >= FACE_IOU, apart, torch.full_like(apart, float("inf"))).argmin(dim=1)
        partner = torch.where(overlaps.max(dim=1).values >= FACE_IOU, close, overlaps.argmax(dim=1))
        total = total.add(_pairs(mine, theirs[partner], overlaps.gather(1, partner[:, None])[:, 0]))
    return total


def _paired_iou(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """IoU of a[i] with b[i] (the project's one IoU, :func:`runtime.postprocess.box_iou`, in chunks)."""
    from runtime.postprocess import box_iou

    parts = [box_iou(record.boxes(a[i:i + chunk]), record.boxes(b[i:i + chunk])).diagonal()
             for i in range(0, len(a), chunk)]
    return torch.nan_to_num(torch.cat(parts) if parts else a.new_zeros(0), nan=0.0)


def _pairs(mine: torch.Tensor, theirs: torch.Tensor, iou: torch.Tensor) -> Candidates:
    """Agreement of row pairs (mine[i], theirs[i]) whose box IoU is ``iou[i]``."""
    if len(mine) == 0:
        return Candidates()
    score = (record.scores(mine) - record.scores(theirs)).abs()
    box = record.boxes(theirs)
    side = torch.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]).clamp_min(1.0)
    points = (record.landmark_points(mine) - record.landmark_points(theirs)).norm(dim=2).amax(dim=1) / side
    agree = (iou >= FACE_IOU) & (score <= SCORE_MARGIN) & (points <= LANDMARK_FRACTION)
    return Candidates(len(mine), int(agree.sum()), float(iou.min()), float(score.max()), float(points.max()))


# One run ---------------------------------------------------------------------------------------------
def pipeline(outputs, cfg, height: int, width: int, options=None) -> tuple[list, list[int]]:
    """detect.py's post-processing of raw outputs: ([dets [K, 15] per image], [K per image])."""
    from retinaface_trt.thresholds import Thresholds
    from runtime.postprocess import detect_faces_batch
    from runtime.priors import prior_tensor

    loc, conf, landms = (t.float() for t in outputs)
    dets, counts = detect_faces_batch(loc, conf, landms, prior_tensor(cfg, height, width), width, height,
                                      options or Thresholds(), cfg.variance)
    counts = [int(c) for c in counts]
    return [dets[i, :c] for i, c in enumerate(counts)], counts


def compare_outputs(shape, outputs, reference, cfg) -> RunResult:
    """Raw outputs of the engine and of the reference for one batch of ``shape`` (N, H, W)."""
    from runtime.compare import output_errors
    from runtime.priors import prior_tensor

    _, height, width = shape
    absolute, relative = output_errors(outputs, reference)
    faces = face_agreement(pipeline(outputs, cfg, height, width)[0], pipeline(reference, cfg, height, width)[0])
    priors = prior_tensor(cfg, height, width)
    candidates = candidate_agreement(decoded_rows(outputs, priors, width, height, cfg.variance),
                                     decoded_rows(reference, priors, width, height, cfg.variance))
    return RunResult(tuple(shape), {"abs": absolute, "rel": relative}, faces, candidates)


def compare_detections(shape, outputs, reference, cfg, settings) -> RunResult:
    """An engine with post-processing inside (``outputs`` = (dets [N, D, 15], count [N])) against the pipeline's
    post-processing of the reference outputs with the engine's thresholds (``settings``:
    a :class:`retinaface_trt.thresholds.Thresholds`)."""
    from runtime.priors import prior_tensor

    _, height, width = shape
    dets, count = outputs
    counts = [int(c) for c in count.reshape(-1)]
    engine = [dets[i, :max(c, 0)].float() for i, c in enumerate(counts)]
    expected, expected_counts = pipeline(reference, cfg, height, width, settings)
    rows = decoded_rows(reference, prior_tensor(cfg, height, width), width, height, cfg.variance)
    return RunResult(tuple(shape), None, face_agreement(engine, expected), row_agreement(engine, rows),
                     {"engine": counts, "pipeline": expected_counts})


def on_cpu(outputs) -> tuple:
    """Copies of an engine's outputs on the CPU (an engine's outputs are views it overwrites on the next run)."""
    return tuple(torch.as_tensor(t).detach().cpu().clone() for t in outputs)
