"""What each backend is timed on: closures per metric, built once (allocation happens outside the timed calls).

A suite is a list of :class:`Case` (metric, batch, fn, divisor, rate). Backends: ``fast`` (the fused
executor on the device-side pipeline of :mod:`runtime.gpu_pipeline`), ``baseline`` (the PyTorch model,
eager float32, detect.py-style CPU post-processing: :mod:`runtime.benchmark.baseline`), and any name of
:func:`runtime.backends.create_backend` (``torch``, ``onnxruntime``, ``tensorrt``) through the Detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch


@dataclass
class Case:
    metric: str
    batch: int
    fn: Callable[[], object]
    notes: dict = field(default_factory=dict)


@dataclass
class Inputs:
    """The data every suite is timed on. images: BGR uint8 host images (original sizes); (W, H) input size."""

    weights: dict
    weights_path: str
    device: torch.device
    precision: str
    batch: int
    input_size: tuple[int, int]
    images: list[np.ndarray]

    def network_sized(self, count: int) -> np.ndarray:
        """``count`` images stretched to the input size with cv2, cycling through ``images``: [count, H, W, 3]."""
        resized = [cv2.resize(im, self.input_size, interpolation=cv2.INTER_LINEAR) for im in self.images]
        return np.stack([resized[i % len(resized)] for i in range(count)])

    def float_input(self, count: int) -> torch.Tensor:
        from runtime.gpu_preprocess import network_input

        return network_input(torch.from_numpy(self.network_sized(count)).to(self.device))


def fast_suite(inputs: Inputs) -> list[Case]:
    from network.fast_runner import FastExecutorModel
    from runtime.gpu_pipeline import FastDetector

    model = FastExecutorModel(inputs.weights, device=inputs.device, precision=inputs.precision)
    detector = FastDetector(model, inputs.input_size)
    one, many = inputs.float_input(1), inputs.float_input(inputs.batch)
    uint8 = torch.from_numpy(inputs.network_sized(inputs.batch)).to(inputs.device)
    notes = {"cuda_graph": model.cuda_graph, "channels_last": model.channels_last,
             "folded_scales": model.program.num_folded}
    return [Case("model_ms", 1, lambda: model(one), notes), Case("model_ms", inputs.batch, lambda: model(many), notes),
            Case("images_per_s", inputs.batch, lambda: _sync(detector.detect_device(uint8)[1]), notes),
            Case("e2e_ms_per_image", 1, lambda: detector.detect(inputs.images[0]), notes)]


def baseline_suite(inputs: Inputs) -> list[Case]:
    from network.config import config_for_weights
    from runtime.benchmark.baseline import BaselineDetector
    from wts_export.model import build_model

    from wts_export.checkpoint import load_state_dict

    model = build_model(load_state_dict(inputs.weights_path)).to(inputs.device)
    detector = BaselineDetector(model, config_for_weights(inputs.weights), inputs.device, inputs.input_size)
    one, many = inputs.float_input(1), inputs.float_input(inputs.batch)
    forward = torch.no_grad()(model)
    notes = {"model": "wts_export RetinaFace, eager float32", "postprocess": "numpy on the CPU, loop priors"}
    return [Case("model_ms", 1, lambda: forward(one), notes), Case("model_ms", inputs.batch, lambda: forward(many), notes),
            Case("e2e_ms_per_image", 1, lambda: detector.detect(inputs.images[0]), notes)]


def backend_suite(name: str, inputs: Inputs) -> list[Case]:
    from runtime.backends import create_backend
    from runtime.detector import Detector

    backend = create_backend(name, weights=inputs.weights, device=str(inputs.device), precision=inputs.precision,
                             input_size=inputs.input_size)
    detector = Detector(backend, resize="stretch", input_size=inputs.input_size)
    one, many = inputs.float_input(1), inputs.float_input(inputs.batch)
    sized = list(inputs.network_sized(inputs.batch))
    infer = backend.infer
    notes = {"pipeline": "runtime.detector.Detector (stretch)"}
    return [Case("model_ms", 1, lambda: infer(one), notes), Case("model_ms", inputs.batch, lambda: infer(many), notes),
            Case("images_per_s", inputs.batch, lambda: detector.detect_batch(sized), notes),
            Case("e2e_ms_per_image", 1, lambda: detector.detect(inputs.images[0]), notes)]


def _sync(tensor: torch.Tensor):
    """End a timed call when its result is on the host (as a caller reading the counts would)."""
    return tensor.tolist()


def suite(name: str, inputs: Inputs) -> list[Case]:
    if name == "fast":
        return fast_suite(inputs)
    if name == "baseline":
        return baseline_suite(inputs)
    return backend_suite(name, inputs)
