"""The CUDA device an engine is built for or run on, as recorded in the sidecar (through PyTorch)."""

from __future__ import annotations

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt.sidecar import DeviceInfo


def current_device(index: int = 0) -> DeviceInfo:
    """Name and compute capability of CUDA device ``index``; RetinaFaceError without a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        raise RetinaFaceError("TensorRT needs an NVIDIA GPU, but PyTorch sees no CUDA device; install a CUDA "
                              "build of PyTorch and an NVIDIA driver, or use `--backend torch`")
    if not 0 <= index < torch.cuda.device_count():
        raise RetinaFaceError(f"CUDA device {index} does not exist; this machine has "
                              f"{torch.cuda.device_count()} (use --device 0..{torch.cuda.device_count() - 1})")
    major, minor = torch.cuda.get_device_capability(index)
    return DeviceInfo(name=torch.cuda.get_device_name(index), compute_capability=f"{major}.{minor}")
