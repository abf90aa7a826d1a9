"""What a selftest case measures (:mod:`runtime.selftest.measure` computes it) and the rules it is judged by
(the tolerances of issue 18). Nothing heavy is imported here.

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
  inside, each of its detections is compared with its reference candidate: of the priors overlapping it
  with IoU ≥ FACE_IOU the one closest in score, else the one overlapping it most. Agreement = agreeing ÷
  compared.

Rules (:func:`judge`):

* fp32, raw outputs: every output within :data:`FP32_TOLERANCE` (max abs), with any weights;
* with a checkpoint (``--weights``): fp16 raw outputs, and post-processing inside in any precision:
  faces agreement ≥ :data:`AGREEMENT` (against the pipeline's post-processing of the reference outputs;
  the engine's NMS has no "+1 pixel" IoU term, so a few overlapping boxes differ, docs/tensorrt.md); in
  fp32 also every matched face's score within the conf tolerance;
* with seeded random weights: the same cases are judged on candidate agreement ≥ AGREEMENT instead.
  Random weights give detections everywhere, in clusters of overlapping boxes of nearly equal scores, so
  NMS keeps one box of a cluster or its neighbour on float16 rounding alone: a correct float16 network
  matches only 97.8% and 99.4% of the faces of the float32 one (random MobileNet-0.25, seeds 0 and 1;
  the checkpoint: 100%), while 100% of its candidates agree (``tools/measure_selftest_rules.py``).
  Candidates are compared before NMS, where rounding only moves a box a little;
* a check with nothing to compare (no face, no candidate) fails: there is nothing to judge it by.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
