"""The ``torch`` backend: the executor of the hand-built network (``network.runner``), on CPU or CUDA."""

from __future__ import annotations

import os

import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.backends import resolve_device


class TorchBackend:
    """Runs :class:`network.runner.ExecutorModel` on any input size and batch (``fixed_input_size`` None)."""

    name = "torch"
    fixed_input_size = None

    def __init__(self, weights, device: str | None = "cpu", precision: str = "fp32"):
        weights = _weights_arg(weights)
        try:
            from network.runner import ExecutorModel
        except ImportError as error:
            raise RetinaFaceError(f"the PyTorch executor is not available in this build ({error})") from None
        self.device = resolve_device(device)
        self.precision = precision
        self._model = ExecutorModel.from_weights(weights, device=str(self.device), half=precision == "fp16")
        self.cfg = self._model.cfg

    def infer(self, batch: torch.Tensor):
        """float32 [N, 3, H, W] on ``device`` → (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10])."""
        if self._model is None:
            raise RetinaFaceError("this backend was closed; create a new one")
        with torch.inference_mode():
            return self._model(batch)

    def close(self) -> None:
        self._model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _weights_arg(weights):
    """A path is checked and passed on as a string; a state_dict (mapping of arrays) as is."""
    if isinstance(weights, dict):
        return weights
    if not os.path.isfile(weights):
        raise RetinaFaceError(f"weights file {weights} not found; expected a .pth or .wts file")
    return str(weights)
