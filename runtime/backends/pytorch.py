"""The ``pytorch`` route: the project's PyTorch RetinaFace (:mod:`wts_export.model`) run eagerly in float32.

It is what the original implementation runs, and the reference that ``compare`` measures every other route
against. It follows the backend protocol of :mod:`runtime.backends` (any input size and batch).
"""

from __future__ import annotations

import torch

from runtime.backends.base import Backend
from runtime.device import resolve_device


class PyTorchBackend(Backend):
    """A backend over :class:`wts_export.model.RetinaFace` (weights: a ``.pth`` / ``.wts`` path or arrays)."""

    name = "pytorch"

    def __init__(self, weights, device: str | None = "cpu"):
        from wts_export.onnx_export import torch_model

        self.device = resolve_device(device)
        self._model = torch_model(weights).to(self.device)
        self.cfg = self._model.cfg

    def infer_impl(self, batch: torch.Tensor):
        """float32 [N, 3, H, W] → (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10]) on ``device``."""
        with torch.inference_mode():
            return self._model(batch.to(self.device))

    def close_impl(self) -> None:
        self._model = None
