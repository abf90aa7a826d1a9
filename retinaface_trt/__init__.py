"""RetinaFace on TensorRT: shared version number and the project's one exception type."""

__version__ = "0.1.0"

from retinaface_trt.errors import RetinaFaceError  # noqa: E402  (re-export)

__all__ = ["RetinaFaceError", "__version__"]
