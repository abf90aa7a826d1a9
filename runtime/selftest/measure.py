"""One input shape of a case: the engine's outputs against the reference's, measured (see :mod:`runtime.selftest.checks`).

Formats: raw outputs (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10]) and detections (float32 [K, 15] per
image: x1, y1, x2, y2, score, five (x, y), in network-input pixels), all on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runtime.selftest.checks import (Candidates, Faces, candidate_agreement, decoded_rows, face_agreement,
                                     row_agreement)


@dataclass
class RunResult:
    """The measurements of one run: ``shape`` (N, H, W), ``errors`` ({"abs", "rel"} per output, None for an
    engine with post-processing inside), ``faces``, ``candidates`` and, with post-processing inside, the
    detection ``counts`` per image of the engine and of the pipeline."""

    shape: tuple[int, int, int]
    errors: dict | None
    faces: Faces
    candidates: Candidates
    counts: dict | None = None

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "errors": self.errors, "faces": self.faces.as_dict(),
                "candidates": self.candidates.as_dict(), "counts": self.counts}


def pipeline(outputs, cfg, height: int, width: int, options=None) -> tuple[list, list[int]]:
    """detect.py's post-processing of raw outputs: ([dets [K, 15] per image], [K per image])."""
    from runtime.options import DetectionOptions
    from runtime.postprocess import detect_faces_batch
    from runtime.priors import prior_tensor

    loc, conf, landms = (t.float() for t in outputs)
    dets, counts = detect_faces_batch(loc, conf, landms, prior_tensor(cfg, height, width), width, height,
                                      options or DetectionOptions(), cfg.variance)
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
    :class:`network.PostprocessSettings`)."""
    from runtime.options import DetectionOptions
    from runtime.priors import prior_tensor

    _, height, width = shape
    dets, count = outputs
    counts = [int(c) for c in count.reshape(-1)]
    engine = [dets[i, :max(c, 0)].float() for i, c in enumerate(counts)]
    options = DetectionOptions(settings.confidence_threshold, settings.top_k, settings.nms_threshold,
                               settings.keep_top_k)
    expected, expected_counts = pipeline(reference, cfg, height, width, options)
    rows = decoded_rows(reference, prior_tensor(cfg, height, width), width, height, cfg.variance)
    return RunResult(tuple(shape), None, face_agreement(engine, expected), row_agreement(engine, rows),
                     {"engine": counts, "pipeline": expected_counts})


def on_cpu(outputs) -> tuple:
    """Copies of an engine's outputs on the CPU (an engine's outputs are views it overwrites on the next run)."""
    return tuple(torch.as_tensor(t).detach().cpu().clone() for t in outputs)
