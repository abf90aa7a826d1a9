"""What a selftest case measures and the rules it is judged by (the tolerances of issue 18).

Every case runs an engine and, on the same inputs, the executor in float32 (the reference). Measured:

* **output errors** (engines with raw outputs): per output (loc, conf, landms) the max absolute error
  ``max |engine − reference|`` and the relative error ``max |engine − reference| / max |reference|``
  (:func:`runtime.compare.output_errors`);
* **faces**: detect.py's post-processing (:func:`runtime.postprocess.detect_faces_batch`) of both outputs
  (for an engine with post-processing inside: its own ``dets``); *faces* are detections scoring ≥
  :data:`FACE_SCORE`. A face of one side is *matched* when the other side has a detection scoring at least
  ``FACE_SCORE − SCORE_MARGIN`` whose IoU with it is ≥ :data:`FACE_IOU` (mutual best; the margin keeps a face
  at 0.501 on one side and 0.499 on the other from counting as a disagreement). Agreement = matched faces
  of both sides ÷ faces of both sides;
* **candidates**, before NMS: every prior that scores ≥ :data:`CANDIDATE_SCORE` (the pipeline's confidence
  threshold) on either side is decoded on both sides (box, score, landmarks in pixels); the two *agree*
  when their IoU is ≥ FACE_IOU, their scores differ by at most SCORE_MARGIN and every landmark is within
  :data:`LANDMARK_FRACTION` of the reference box's larger side. For an engine with post-processing
  inside, each of its detections is compared with the reference candidate it overlaps most. Agreement =
  agreeing ÷ compared.

Rules (:func:`judge`):

* fp32, raw outputs: every output within :data:`FP32_TOLERANCE` (max abs), with any weights;
* with a checkpoint (``--weights``): fp16 raw outputs, and post-processing inside in any precision:
  faces agreement ≥ :data:`AGREEMENT` (against the pipeline's post-processing of the reference outputs;
  the engine's NMS has no "+1 pixel" IoU term, so a few overlapping boxes differ, docs/tensorrt.md); in
  fp32 also every matched face's score within the conf tolerance;
* with seeded random weights: the same cases are judged on candidate agreement ≥ AGREEMENT instead.
  Random weights give detections everywhere, in clusters of overlapping boxes of nearly equal scores, so
  NMS keeps one box of a cluster or its neighbour on float16 rounding alone: a correct float16 network
  matches only 98.0% and 98.8% of the faces of the float32 one (random MobileNet-0.25, seeds 0 and 1;
  the checkpoint: 100%), while 100% of its candidates agree (``tools/measure_selftest_rules.py``).
  Candidates are compared before NMS, where rounding only moves a box a little;
* a check with nothing to compare (no face, no candidate) fails: there is nothing to judge it by.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

FP32_TOLERANCE = {"loc": 1e-3, "conf": 1e-4, "landms": 1e-3}   # max abs error against the executor
AGREEMENT = 0.99           # fraction of faces (checkpoint) or candidates (random weights) that must agree
FACE_SCORE = 0.5           # a detection with this score or more is a face
FACE_IOU = 0.9             # matched or agreeing boxes overlap at least this much (IoU, "+1 pixel")
SCORE_MARGIN = 0.05        # a matching detection may score this much below FACE_SCORE; candidates' scores differ by ≤
CANDIDATE_SCORE = 0.02     # candidates: priors scoring at least this (the pipeline's confidence threshold)
LANDMARK_FRACTION = 0.1    # agreeing candidates' landmarks differ by at most this × the box's larger side


def rules_text() -> str:
    """The rules in two lines, for the table header."""
    limits = ", ".join(f"{name} ≤ {limit:g}" for name, limit in FP32_TOLERANCE.items())
    return (f"fp32: max abs error against the executor (float32) {limits}\n"
            f"fp16 and post-processing in the engine: ≥ {AGREEMENT:.0%} agreement, of faces (score ≥ {FACE_SCORE}, "
            f"IoU ≥ {FACE_IOU}) with --weights, of candidates before NMS with random weights")


def rules() -> dict:
    """The rules as data, for the JSON report."""
    return {"fp32_max_abs": dict(FP32_TOLERANCE), "agreement": AGREEMENT, "face_score": FACE_SCORE,
            "iou": FACE_IOU, "score_margin": SCORE_MARGIN, "candidate_score": CANDIDATE_SCORE,
            "landmark_fraction": LANDMARK_FRACTION, "text": rules_text().replace("\n", "; ")}


# Faces, after the pipeline ---------------------------------------------------------------------------
@dataclass
class Faces:
    """Face agreement between an engine and the reference, summed over images."""

    reference: int = 0              # faces of the reference
    engine: int = 0                 # faces of the engine
    matched_reference: int = 0      # reference faces the engine also found
    matched_engine: int = 0         # engine faces the reference also found
    worst_score: float = 0.0        # largest |score difference| of a matched pair
    worst_landmark_px: float = 0.0  # largest landmark distance of a matched pair, network-input pixels

    @property
    def ratio(self) -> float | None:
        """Matched faces of both sides ÷ faces of both sides; None without any face."""
        total = self.reference + self.engine
        return (self.matched_reference + self.matched_engine) / total if total else None

    def add(self, other: "Faces") -> "Faces":
        return Faces(self.reference + other.reference, self.engine + other.engine,
                     self.matched_reference + other.matched_reference, self.matched_engine + other.matched_engine,
                     max(self.worst_score, other.worst_score), max(self.worst_landmark_px, other.worst_landmark_px))

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def face_agreement(engine: list, reference: list) -> Faces:
    """Faces of per-image detections ``engine`` and ``reference`` (lists of float32 [K, 15], pixels)."""
    total = Faces()
    for mine, theirs in zip(engine, reference):
        total = total.add(_image_faces(mine, theirs))
    return total


def _image_faces(engine: torch.Tensor, reference: torch.Tensor) -> Faces:
    from runtime.compare import match_faces

    faces = lambda d: d[d[:, 4] >= FACE_SCORE]                          # noqa: E731
    candidates = lambda d: d[d[:, 4] >= FACE_SCORE - SCORE_MARGIN]      # noqa: E731
    found, score_r, points_r = match_faces(faces(reference), candidates(engine), FACE_IOU)
    kept, score_e, points_e = match_faces(faces(engine), candidates(reference), FACE_IOU)
    return Faces(len(faces(reference)), len(faces(engine)), found, kept, max(score_r, score_e),
                 max(points_r, points_e))


# Candidates, before NMS ------------------------------------------------------------------------------
@dataclass
class Candidates:
    """Candidate agreement between an engine and the reference, summed over images."""

    compared: int = 0
    agreeing: int = 0
    worst_iou: float = 1.0          # smallest IoU of a compared pair
    worst_score: float = 0.0        # largest |score difference|
    worst_landmark: float = 0.0     # largest landmark distance ÷ the reference box's larger side

    @property
    def ratio(self) -> float | None:
        return self.agreeing / self.compared if self.compared else None

    def add(self, other: "Candidates") -> "Candidates":
        return Candidates(self.compared + other.compared, self.agreeing + other.agreeing,
                          min(self.worst_iou, other.worst_iou), max(self.worst_score, other.worst_score),
                          max(self.worst_landmark, other.worst_landmark))

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def decoded_rows(outputs, priors: torch.Tensor, width: int, height: int, variances) -> torch.Tensor:
    """(loc, conf, landms) [N, P, ·] → every prior decoded, float32 [N, P, 15] in the detections' layout
    (x1, y1, x2, y2, score, five (x, y)) in network-input pixels, with the pipeline's decoding functions."""
    from runtime.postprocess import decode_boxes, decode_landmarks

    loc, conf, landms = (t.detach().float().cpu() for t in outputs)
    boxes = decode_boxes(loc, priors, variances) * torch.tensor([width, height] * 2, dtype=torch.float32)
    points = decode_landmarks(landms, priors, variances) * torch.tensor([width, height] * 5, dtype=torch.float32)
    return torch.cat((boxes, conf[..., 1:2], points), dim=2)


def candidate_agreement(engine: torch.Tensor, reference: torch.Tensor) -> Candidates:
    """Prior by prior: ``engine`` and ``reference`` decoded rows [N, P, 15] (see :func:`decoded_rows`)."""
    total = Candidates()
    for mine, theirs in zip(engine, reference):
        chosen = torch.maximum(mine[:, 4], theirs[:, 4]) >= CANDIDATE_SCORE
        total = total.add(_pairs(mine[chosen], theirs[chosen], _paired_iou(mine[chosen], theirs[chosen])))
    return total


def row_agreement(engine: list, reference: torch.Tensor) -> Candidates:
    """Each engine detection (per image [K, 15]) against the reference candidate (decoded rows [N, P, 15])
    it overlaps most, among those scoring at least CANDIDATE_SCORE − SCORE_MARGIN."""
    from runtime.postprocess import box_iou

    total = Candidates()
    for mine, theirs in zip(engine, reference):
        theirs = theirs[theirs[:, 4] >= CANDIDATE_SCORE - SCORE_MARGIN]
        if len(mine) == 0 or len(theirs) == 0:
            total = total.add(Candidates(compared=len(mine), worst_iou=0.0 if len(mine) else 1.0))
            continue
        overlaps = torch.nan_to_num(box_iou(mine[:, :4], theirs[:, :4]), nan=0.0)
        best, partner = overlaps.max(dim=1)
        total = total.add(_pairs(mine, theirs[partner], best))
    return total


def _paired_iou(a: torch.Tensor, b: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """IoU of a[i] with b[i] (the project's one IoU, :func:`runtime.postprocess.box_iou`, in chunks)."""
    from runtime.postprocess import box_iou

    parts = [box_iou(a[i:i + chunk, :4], b[i:i + chunk, :4]).diagonal() for i in range(0, len(a), chunk)]
    return torch.nan_to_num(torch.cat(parts) if parts else a.new_zeros(0), nan=0.0)


def _pairs(mine: torch.Tensor, theirs: torch.Tensor, iou: torch.Tensor) -> Candidates:
    """Agreement of row pairs (mine[i], theirs[i]) whose box IoU is ``iou[i]``."""
    if len(mine) == 0:
        return Candidates()
    score = (mine[:, 4] - theirs[:, 4]).abs()
    side = torch.maximum(theirs[:, 2] - theirs[:, 0], theirs[:, 3] - theirs[:, 1]).clamp_min(1.0)
    points = (mine[:, 5:].reshape(-1, 5, 2) - theirs[:, 5:].reshape(-1, 5, 2)).norm(dim=2).amax(dim=1) / side
    agree = (iou >= FACE_IOU) & (score <= SCORE_MARGIN) & (points <= LANDMARK_FRACTION)
    return Candidates(len(mine), int(agree.sum()), float(iou.min()), float(score.max()), float(points.max()))


# Judging ---------------------------------------------------------------------------------------------
@dataclass
class Check:
    """One judged quantity of a case: ``value`` against ``limit`` (``at_most``, or at least)."""

    name: str
    value: float | None
    limit: float
    at_most: bool = True
    passed: bool = field(init=False)

    def __post_init__(self):
        self.passed = self.value is not None and (self.value <= self.limit if self.at_most else self.value >= self.limit)

    def text(self) -> str:
        shown = "nothing to compare" if self.value is None else f"{self.value:.3g}"
        return f"{self.name} {shown} ({'≤' if self.at_most else '≥'} {self.limit:g})"


def judge(precision: str, postprocess: bool, random_weights: bool, errors: dict | None, faces: Faces,
          candidates: Candidates) -> list[Check]:
    """The checks of one case (rules in the module docstring). ``errors``: {"abs": {output: value}} or None."""
    if not postprocess and precision == "fp32":
        return [Check(f"{name} max abs", errors["abs"][name], limit) for name, limit in FP32_TOLERANCE.items()]
    if random_weights:
        return [Check("candidates agreeing", candidates.ratio, AGREEMENT, at_most=False)]
    checks = [Check("faces matched", faces.ratio, AGREEMENT, at_most=False)]
    if postprocess and precision == "fp32":
        checks.append(Check("face score difference", faces.worst_score if faces.ratio is not None else None,
                            FP32_TOLERANCE["conf"]))
    return checks
