"""``ExecutorModel``: the hand-built network run by the executor, as a callable on torch tensors."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import torch

from network.config import RetinaFaceConfig, config_for_weights
from network.executor import Program, trt
from network.populate import INPUT_NAME, OUTPUT_NAMES, populate_network


class ExecutorModel:
    """RetinaFace built with :func:`populate_network` on the executor and compiled for one device.

    ``model(x)`` takes float32 [N, 3, H, W] (BGR minus mean) and returns (loc, conf, landms) as tensors on
    ``model.device``; by default batch, height and width are all dynamic. ``half=True`` runs the strongly
    typed float16 network (float32 input and outputs), as a TensorRT FP16 engine would be built.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], cfg: RetinaFaceConfig | None = None,
                 device: str | torch.device = "cpu", input_shape=(-1, 3, -1, -1), half: bool = False):
        self.cfg = cfg or config_for_weights(weights)
        self.network = trt.Builder(trt.Logger()).create_network(0)
        self._store = populate_network(trt, self.network, weights, self.cfg, input_shape=input_shape, half=half)
        self.device = torch.device(device)
        self._program = Program(self.network, self.device)

    @classmethod
    def from_weights(cls, weights: str | os.PathLike | Mapping[str, np.ndarray], **kwargs) -> "ExecutorModel":
        """From a ``.pth`` / ``.wts`` path or an already loaded name → array mapping."""
        if isinstance(weights, (str, os.PathLike)):
            from wts_export.weights import load_weights
            weights = load_weights(weights)
        return cls(weights, **kwargs)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = self._program({INPUT_NAME: x})
        return tuple(outputs[name] for name in OUTPUT_NAMES)
