"""The detection thresholds: one object, validated once, shared by the network and the runtime.

:class:`Thresholds` holds detect.py's four post-processing settings and their defaults. The pipeline
(``runtime.postprocess``), the network's own decoding and NMS (``network.postprocess``, ``build
--with-postprocess``), the Detector, the service and the Triton repository all take this object; the CLI's
flags and the SDK's keywords are turned into it in one place (:meth:`Thresholds.take`).

An engine with decoding and NMS inside has one limit the pipeline has not: TensorRT's top-k layer takes at
most :data:`MAX_TOP_K` candidates. :meth:`Thresholds.in_engine` gives the thresholds an engine is built
with (top_k clipped to that limit, keep_top_k checked against it).

This module imports nothing heavy (no NumPy, no torch), so ``--help`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from retinaface_trt.errors import RetinaFaceError

MAX_TOP_K = 3840    # TensorRT's ITopKLayer: "only values up to 3840 are supported"


def check_probability(name: str, value) -> float:
    """``value`` as a float if it is a finite number in [0, 1]; else RetinaFaceError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise RetinaFaceError(f"{name} must be a number in [0, 1], found {value!r}")
    return number


def check_count(name: str, value, low: int = 1) -> int:
    """``value`` as an int if it is an integer ≥ ``low``; else RetinaFaceError."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) and not hasattr(value, "__index__"):
        raise RetinaFaceError(f"{name} must be an integer ≥ {low}, found {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise RetinaFaceError(f"{name} must be an integer ≥ {low}, found {value!r}") from None
    if number < low:
        raise RetinaFaceError(f"{name} must be an integer ≥ {low}, found {value!r}")
    return number


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """detect.py's post-processing settings and their defaults, checked when created (keywords only: the
    four fields have been written in two orders before)."""

    confidence_threshold: float = 0.02   # keep scores strictly above this
    nms_threshold: float = 0.4           # remove a box whose IoU with a kept box is > this
    top_k: int = 5000                    # candidates kept before NMS
    keep_top_k: int = 750                # detections kept after NMS

    def __post_init__(self):
        for name in ("confidence_threshold", "nms_threshold"):
            object.__setattr__(self, name, check_probability(name, getattr(self, name)))
        for name in ("top_k", "keep_top_k"):
            object.__setattr__(self, name, check_count(name, getattr(self, name)))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def take(cls, options: dict) -> "Thresholds":
        """The thresholds named in keyword ``options`` (removed from it; defaults for those left out); a
        ``thresholds`` entry (a Thresholds) is taken as it is, and may not be mixed with the four keywords."""
        given = {name: options.pop(name) for name in cls.names() if name in options}
        whole = options.pop("thresholds", None)
        if whole is None:
            return cls(**given)
        if not isinstance(whole, cls) or given:
            raise RetinaFaceError(f"thresholds must be one Thresholds object, without {', '.join(cls.names())} "
                                  f"beside it; found {type(whole).__name__} and {sorted(given)}")
        return whole

    def check_engine(self) -> "Thresholds":
        """These thresholds if an engine can run them as they are (top_k and keep_top_k at most
        :data:`MAX_TOP_K`); else one RetinaFaceError line naming the field."""
        for name in ("top_k", "keep_top_k"):
            value = getattr(self, name)
            if value > MAX_TOP_K:
                raise RetinaFaceError(f"{name} must be an integer in 1..{MAX_TOP_K} in the engine (TensorRT's top-k "
                                      f"takes at most {MAX_TOP_K}), found {value}")
        return self

    def in_engine(self) -> "Thresholds":
        """These thresholds as an engine with decoding and NMS inside runs them: detect.py's top_k clipped to
        :data:`MAX_TOP_K` (what ``--postprocess network`` has always done), then :meth:`check_engine`."""
        return replace(self, top_k=min(self.top_k, MAX_TOP_K)).check_engine()

    def as_dict(self) -> dict:
        return asdict(self)
