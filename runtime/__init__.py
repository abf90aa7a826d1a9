"""Detection runtime shared by every backend: pre-processing, priors, decoding, NMS, SDK.

``from runtime import Engine, Detector, Face`` works without importing torch until a model is built:
the names are resolved on first use. Beyond still images: ``detect_video(detector, source)`` iterates over a
video's frames and their faces, ``aligned_crops(image, landmarks)`` gives the faces aligned for a recogniser,
``anonymized(image, boxes)`` a copy with the faces hidden.
"""

_EXPORTS = {"Engine": "runtime.sdk", "Detector": "runtime.detector", "Face": "runtime.face",
            "detect_video": "runtime.video", "aligned_crops": "runtime.align", "anonymized": "runtime.anonymize"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
