"""Serving the detector over the network: an HTTP service, and a Triton Inference Server model repository.

* :mod:`runtime.serve.app`: the ASGI app (``POST /v1/detect`` → the SDK's JSON record, health, readiness,
  Prometheus metrics), over a :class:`runtime.serve.batcher.MicroBatcher` whose one worker thread owns the
  detector; :mod:`runtime.serve.server` runs it under uvicorn (``retinaface-trt serve``).
* :mod:`runtime.serve.triton`: ``retinaface-trt export-triton``'s repository (an ensemble of Python-backend
  pre/post-processing around a TensorRT plan or the executor) and the launcher of a local ``tritonserver``.

Importing this package imports nothing heavy; the ASGI stack comes with ``pip install '.[serve]'`` in the clone
(:func:`require` says so when it is missing). See docs/serving.md.
"""

from __future__ import annotations

import importlib.util

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint

SERVE_MODULES = ("starlette", "uvicorn", "prometheus_client")


def require(modules=SERVE_MODULES, extra: str = "serve") -> None:
    """Raise RetinaFaceError naming the install command if one of ``modules`` cannot be imported."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise RetinaFaceError(f"{', '.join(missing)} not installed; the service needs them: "
                              f"{install_hint(extra)}")
