"""Run every available path on the same inputs and measure how far apart their outputs are.

Paths (each follows the backend protocol of :mod:`runtime.backends`):

* ``pytorch``: the project's PyTorch RetinaFace (:mod:`runtime.backends.pytorch`), the reference;
* ``executor``: the hand-built network on the executor (``torch`` backend);
* ``onnxruntime``: an ``.onnx`` file, or the weights exported in memory (dynamic N, H, W);
* ``tensorrt:NAME``: each engine given (hand-built, or ``build --onnx``: the sidecar's ``source`` tells);
* ``executor-int8 (emulated)``: with INT8 settings, the explicit INT8 network on the executor
  (:mod:`runtime.calibration`). Its outputs differ from float32 by design: judge it by its detections.

Errors per output (loc, conf, landms): ``abs`` = max |a − b|; ``rel`` = max |a − b| / max |b|
(relative to the largest magnitude of the second path's output, which stays meaningful where single
values are near 0). Detection agreement: detect.py's post-processing on both outputs, faces with score
≥ ``score_threshold`` matched one to one by mutual best IoU ≥ ``iou`` (0.5 by default); the worst score and
landmark differences (pixels of the network input) over the matched faces. :func:`agreement` sums the faces
and matches of each pair over all inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations

import torch

from network import OUTPUT_NAMES
from retinaface_trt import detections as record
from runtime.postprocess import box_iou

INT8_PATH = "executor-int8 (emulated)"


def open_paths(weights, onnx=None, engines=(), device: str = "cpu", int8=None) -> tuple[list, list[str]]:
    """([(name, backend)] of every path that can run here, [why each other path was skipped]); ``int8``
    (``runtime.calibration.Int8Settings``) adds the emulated INT8 path."""
    from retinaface_trt.errors import RetinaFaceError
    from runtime.backends import create_backend

    from runtime.backends.pytorch import PyTorchBackend

    opened = [("pytorch", PyTorchBackend(weights)), ("executor", create_backend("executor", weights, None, device))]
    skipped = []
    try:
        opened.append(("onnxruntime", create_backend("onnxruntime", weights, onnx, device)))
    except RetinaFaceError as error:
        skipped.append(f"onnxruntime: {error}")
    for engine in engines:
        try:
            opened.append((f"tensorrt:{_engine_label(engine)}", create_backend("tensorrt", None, engine, device)))
        except RetinaFaceError as error:
            skipped.append(f"tensorrt {engine}: {error}")
    if int8 is not None:
        opened.append((INT8_PATH, create_backend("executor", weights, None, device, precision="int8", int8=int8)))
    return opened, skipped


def _engine_label(engine) -> str:
    from pathlib import Path

    from runtime.backends.tensorrt.sidecar import read_sidecar

    try:
        source = read_sidecar(engine).get("source", "weights")
    except Exception:   # noqa: BLE001 - the backend reports a bad sidecar properly right after
        source = "?"
    return f"{Path(engine).name} ({source})"


@dataclass
class PairReport:
    """How far path ``a`` is from path ``b`` on one input. Errors per output name; differences in pixels."""

    input: str
    a: str
    b: str
    abs: dict
    rel: dict
    faces_a: int
    faces_b: int
    matched: int
    worst_score: float
    worst_landmark_px: float

    def max_abs(self) -> float:
        return max(self.abs.values())


def output_errors(a, b) -> tuple[dict, dict]:
    """Max absolute and relative (see module doc) error of each output; a, b: (loc, conf, landms) tensors."""
    absolute, relative = {}, {}
    for name, x, y in zip(OUTPUT_NAMES, a, b):
        diff = float((x.cpu().double() - y.cpu().double()).abs().max())
        absolute[name] = diff
        relative[name] = diff / max(float(y.abs().max()), 1e-12)
    return absolute, relative


def detections(outputs, cfg, width: int, height: int, score_threshold: float) -> list[torch.Tensor]:
    """detect.py's detections [K, 15] per image of a batch, keeping scores ≥ ``score_threshold``."""
    from runtime.postprocess import detect_faces
    from runtime.priors import prior_tensor

    loc, conf, landms = (o.cpu().float() for o in outputs)
    priors = prior_tensor(cfg, height, width, "cpu")
    dets = [detect_faces(loc[i], conf[i], landms[i], priors, width, height) for i in range(loc.shape[0])]
    return [record.at_least(d, score_threshold) for d in dets]


def match_faces(da: torch.Tensor, db: torch.Tensor, iou: float = 0.5) -> tuple[int, float, float]:
    """(matched, worst |score difference|, worst landmark distance in px) of detections da [Ka, 15], db [Kb, 15]."""
    if len(da) == 0 or len(db) == 0:
        return 0, 0.0, 0.0
    overlaps = box_iou(record.boxes(da), record.boxes(db))
    best_b, best_a = overlaps.argmax(1), overlaps.argmax(0)
    mutual = (best_a[best_b] == torch.arange(len(da))) & (overlaps.max(1).values >= iou)
    ia, ib = torch.nonzero(mutual).flatten(), best_b[mutual]
    if len(ia) == 0:
        return 0, 0.0, 0.0
    score = float((record.scores(da[ia]) - record.scores(db[ib])).abs().max())
    points = (record.landmark_points(da[ia]) - record.landmark_points(db[ib])).norm(dim=2)
    return len(ia), score, float(points.max())


def compare_batch(paths, batch: torch.Tensor, label: str, score_threshold: float = 0.5,
                  iou: float = 0.5) -> list[PairReport]:
    """Run ``batch`` (float32 [N, 3, H, W]) through every (name, backend) and compare each pair (faces matched
    at IoU ≥ ``iou``).

    Detection counts are summed over the batch; errors and differences are the worst over it.
    """
    height, width = batch.shape[2:]
    outputs = {name: backend.infer(batch.to(backend.device)) for name, backend in paths}
    cfg = paths[0][1].cfg
    dets = {name: detections(out, cfg, width, height, score_threshold) for name, out in outputs.items()}
    reports = []
    for (a, _), (b, _) in combinations(paths, 2):
        absolute, relative = output_errors(outputs[a], outputs[b])
        matches = [match_faces(x, y, iou) for x, y in zip(dets[a], dets[b])]
        reports.append(PairReport(label, a, b, absolute, relative, sum(len(d) for d in dets[a]),
                                  sum(len(d) for d in dets[b]), sum(m[0] for m in matches),
                                  max(m[1] for m in matches), max(m[2] for m in matches)))
    return reports


def format_table(reports: list[PairReport]) -> str:
    """A plain-text table: one row per input and pair; the text columns are as wide as their longest entry, so a
    long pair name (the INT8 path's) or file name does not push the numbers out of their columns."""
    pairs = [f"{r.a} vs {r.b}" for r in reports]
    wide_input = max([len("input")] + [len(r.input) for r in reports])
    wide_pair = max([len("pair")] + [len(p) for p in pairs])
    header = (f"{'input':<{wide_input}} {'pair':<{wide_pair}} "
              + " ".join(f"{o + ' abs':>10} {o + ' rel':>10}" for o in OUTPUT_NAMES)
              + f" {'faces':>9} {'matched':>7} {'score Δ':>9} {'landm Δpx':>9}")
    rows = [header, "-" * len(header)]
    for r, pair in zip(reports, pairs):
        errors = " ".join(f"{r.abs[o]:>10.2e} {r.rel[o]:>10.2e}" for o in OUTPUT_NAMES)
        rows.append(f"{r.input:<{wide_input}} {pair:<{wide_pair}} {errors} {f'{r.faces_a}/{r.faces_b}':>9} "
                    f"{r.matched:>7} {r.worst_score:>9.2e} {r.worst_landmark_px:>9.2e}")
    return "\n".join(rows)


def agreement(reports: list[PairReport]) -> list[dict]:
    """Per pair, over all inputs: faces of each path, faces matched, and the share of ``a``'s faces matched."""
    totals: dict[tuple[str, str], list[int]] = {}
    for r in reports:
        counts = totals.setdefault((r.a, r.b), [0, 0, 0])
        counts[0], counts[1], counts[2] = counts[0] + r.faces_a, counts[1] + r.faces_b, counts[2] + r.matched
    return [{"a": a, "b": b, "faces_a": fa, "faces_b": fb, "matched": m, "share_of_a": m / fa if fa else 1.0}
            for (a, b), (fa, fb, m) in totals.items()]


def format_agreement(rows: list[dict]) -> str:
    """:func:`agreement` as text, one line per pair."""
    wide = max([0] + [len(f"{r['a']} vs {r['b']}") for r in rows])
    return "\n".join(f"{r['a'] + ' vs ' + r['b']:<{wide}}  faces {r['faces_a']}/{r['faces_b']}, matched "
                     f"{r['matched']} ({100 * r['share_of_a']:.1f}% of {r['a']}'s)" for r in rows)


def to_records(reports: list[PairReport]) -> list[dict]:
    """The reports as JSON-ready dictionaries."""
    return [asdict(r) for r in reports]
