"""The selftest's cases: what each one builds and the input shapes it runs.

A case is one engine: a backbone, a precision and a *kind*. Kinds (sizes are :class:`Sizes`, W×H):

==================  ===================================================  ===============================
kind                engine                                               runs (N×H×W)
==================  ===================================================  ===============================
fixed               640×640, batch 1                                     1×640×640
dynamic-batch       640×640, batch 1..4                                  1×640×640, 4×640×640
dynamic-size        200×328 .. 1024×624, batch 1                         1×328×200, 1×624×1024
onnx                TensorRT's ONNX parser on a dynamic export,          1×640×640, 2×328×200
                    200×328 .. 640×640, batch 1..2
postprocess         640×640, batch 1..2, decoding and NMS inside         1×640×640, 2×640×640
version-compatible  640×640, batch 1, ``--version-compatible``           1×640×640
ampere+             640×640, batch 1, ``--hardware-compatibility ampere+``  1×640×640
same-cc             640×640, batch 1, ``--hardware-compatibility same-cc``  1×640×640
==================  ===================================================  ===============================

Each run shape runs on :attr:`Sizes.batches` (4) batches of different images; a dynamic-batch case then
alternates its shapes (:attr:`Case.replays`), under CUDA graph replay where it can. Names are
``backbone/precision/kind`` (``mobilenet0.25/fp16/dynamic-size``). :func:`select` picks cases by glob
patterns: a pattern with a ``/`` matches the whole name, one without matches the kind.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from retinaface_trt.errors import RetinaFaceError

KINDS = ("fixed", "dynamic-batch", "dynamic-size", "onnx", "postprocess", "version-compatible", "ampere+", "same-cc")
# The default set (``selftest`` without ``--full`` or ``--cases``): the engine most users build (`build`'s and the
# engine cache's: 640×640, a dynamic batch) in each precision, its batch shapes alternating under CUDA graph replay.
# It answers "does this TensorRT compute what the executor computes" in minutes; ``--full`` runs every case.
DEFAULT_KINDS = ("dynamic-batch",)
BACKBONES_BY_DEFAULT = ("mobilenet0.25",)     # random weights: the small backbone (a checkpoint: its own)
REPLAY_ROUNDS = 3                              # calls per shape while alternating: one capture, then replays


@dataclass(frozen=True)
class Sizes:
    """The input sizes of the cases, (W, H) in pixels, the largest dynamic batch, and how many batches of
    different images each run shape is given (so that more than 100 faces back the 99% of the face rule)."""

    fixed: tuple[int, int] = (640, 640)
    odd: tuple[int, int] = (200, 328)        # not a multiple of 32: the FPN's upsampling ratio is not 2
    large: tuple[int, int] = (1024, 624)
    batch: int = 4
    batches: int = 4


@dataclass(frozen=True)
class Case:
    """One engine to build and the shapes to run it at.

    ``build`` holds :class:`runtime.backends.tensorrt.build.BuildOptions` keyword arguments (sizes (W, H));
    ``runs`` are (N, H, W), each run ``batches`` times on different images; ``onnx`` builds through
    TensorRT's ONNX parser from a dynamic ONNX export.
    """

    backbone: str
    precision: str
    kind: str
    build: dict = field(hash=False)
    runs: tuple[tuple[int, int, int], ...]
    onnx: bool = False
    batches: int = 1

    @property
    def name(self) -> str:
        return f"{self.backbone}/{self.precision}/{self.kind}"

    @property
    def postprocess(self) -> bool:
        return self.build.get("postprocess") is not None

    @property
    def replays(self) -> tuple[tuple[int, int, int, int], ...]:
        """(N, H, W, batch index) of the calls that alternate between the run shapes of a dynamic-batch case,
        every one compared with the reference (replayed from CUDA graphs where the engine can be captured on a
        GPU: one capture per shape, then replays); () for other kinds."""
        if self.kind != "dynamic-batch":
            return ()
        rounds = max(REPLAY_ROUNDS, self.batches)
        return tuple((*shape, i % self.batches) for i in range(rounds) for shape in self.runs)

    def options(self, **changes):
        """The BuildOptions of this case (``changes`` override, e.g. the timing cache folder)."""
        from runtime.backends.tensorrt.build import BuildOptions

        return BuildOptions(precision=self.precision, **{**self.build, **changes})


def plan_cases(backbones, precisions, sizes: Sizes = Sizes()) -> list[Case]:
    """Every case for ``backbones`` × ``precisions`` × :data:`KINDS`, in that order."""
    cases = []
    for backbone in backbones:
        for precision in precisions:
            for kind in KINDS:
                build, runs, *onnx = _kind(kind, sizes)
                cases.append(Case(backbone, precision, kind, build, runs, bool(onnx), sizes.batches))
    return cases


def _kind(kind: str, sizes: Sizes) -> tuple:
    """(build options, runs[, onnx]) of ``kind``."""
    (w, h), (ow, oh), (lw, lh), n = sizes.fixed, sizes.odd, sizes.large, sizes.batch
    one = dict(input_size=(w, h), max_batch=1)
    if kind == "fixed":
        return one, ((1, h, w),)
    if kind == "dynamic-batch":
        return dict(input_size=(w, h), max_batch=n), ((1, h, w), (n, h, w))
    if kind == "dynamic-size":
        low, high = _span((ow, oh), (lw, lh))
        return dict(input_size=_clamp((w, h), low, high), min_size=low, max_size=high, max_batch=1), \
            ((1, oh, ow), (1, lh, lw))
    if kind == "onnx":
        low, high = _span((w, h), (ow, oh))
        return dict(input_size=(w, h), min_size=low, max_size=high, max_batch=2), ((1, h, w), (2, oh, ow)), True
    if kind == "postprocess":
        return dict(input_size=(w, h), max_batch=2, postprocess=_postprocess(w, h)), ((1, h, w), (2, h, w))
    if kind == "version-compatible":
        return dict(one, version_compatible=True), ((1, h, w),)
    return dict(one, hardware_compatibility=kind), ((1, h, w),)          # ampere+, same-cc


def _span(a: tuple[int, int], b: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(smallest, largest) (W, H) covering both sizes."""
    return (min(a[0], b[0]), min(a[1], b[1])), (max(a[0], b[0]), max(a[1], b[1]))


def _clamp(size, low, high) -> tuple[int, int]:
    return tuple(min(max(s, lo), hi) for s, lo, hi in zip(size, low, high))


def _postprocess(width: int, height: int):
    """detect.py's thresholds inside the engine; keep_top_k at most the candidates of a small input."""
    from network.config import MOBILENET_0_25
    from runtime.priors import prior_boxes

    from retinaface_trt.thresholds import Thresholds

    defaults = Thresholds().in_engine()
    priors = len(prior_boxes(MOBILENET_0_25, height, width))     # the same steps for both backbones
    return Thresholds(top_k=defaults.top_k, keep_top_k=min(defaults.keep_top_k, defaults.top_k, priors))


def chosen_cases(backbones, precisions, sizes: Sizes = Sizes(), patterns=None, full: bool = False) -> list[Case]:
    """The cases to run: those matching ``patterns`` (any case); else every case with ``full``; else the default
    set, :data:`DEFAULT_KINDS` for the backbones of :data:`BACKBONES_BY_DEFAULT` among ``backbones`` (or the
    first of ``backbones``, e.g. a checkpoint's)."""
    pool = plan_cases(backbones, precisions, sizes)
    if patterns:
        return select(pool, patterns)
    if full:
        return pool
    chosen = [b for b in backbones if b in BACKBONES_BY_DEFAULT] or list(backbones)[:1]
    return [case for case in pool if case.kind in DEFAULT_KINDS and case.backbone in chosen]


def select(cases: list[Case], patterns) -> list[Case]:
    """The cases matching any of ``patterns`` (all for None); RetinaFaceError for a pattern matching none."""
    if not patterns:
        return list(cases)
    unmatched = [p for p in patterns if not any(_matches(case, p) for case in cases)]
    if unmatched:
        raise RetinaFaceError(f"--cases {' '.join(unmatched)} matches no case; the cases are "
                              f"{', '.join(c.name for c in cases)} (a pattern without '/' matches the kind: "
                              f"{', '.join(KINDS)})")
    return [case for case in cases if any(_matches(case, p) for p in patterns)]


def _matches(case: Case, pattern: str) -> bool:
    return fnmatch.fnmatchcase(case.name if "/" in pattern else case.kind, pattern)
