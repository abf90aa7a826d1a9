"""Detection runtime shared by every backend: pre-processing, priors, decoding, NMS, SDK.

``from runtime import Engine, Detector, Face`` works without importing torch until a model is built:
the names are resolved on first use.
"""

_EXPORTS = {"Engine": "runtime.sdk", "Detector": "runtime.detector", "Face": "runtime.face"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
