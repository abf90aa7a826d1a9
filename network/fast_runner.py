"""``FastExecutorModel``: the hand-built network through :class:`network.executor.fused.FusedProgram`.

Same inputs and outputs as :class:`network.runner.ExecutorModel` (float32 [N, 3, H, W] BGR minus mean →
float32 loc, conf, landms), with the inference options of the GPU path:

* ``precision``: "fp32" or "fp16" (the float32 network is folded first, then converted, so float16 sees
  BatchNorm folded from float32 statistics);
* ``channels_last``: NHWC activations (default: on for CUDA);
* ``cuda_graph``: capture one CUDA graph per input shape and replay it (default: on for CUDA). Replayed
  outputs live in static buffers that the next call with the same shape overwrites: copy what you keep.

:class:`CudaGraphed` captures any tensor function the same way and is shared by the GPU pipeline.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

import numpy as np
import torch

from network.config import RetinaFaceConfig, config_for_weights
from network.executor import trt
from network.executor.fused import FusedProgram
from network.populate import INPUT_NAME, OUTPUT_NAMES, populate_network
from retinaface_trt.errors import RetinaFaceError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


class CudaGraphed:
    """``CudaGraphed(fn)(*tensors)``: ``fn`` captured once per (shapes, dtypes) into a CUDA graph and replayed.

    Inputs are copied into static buffers; the outputs returned are the graph's static outputs. ``warmup``
    eager runs on a side stream come first (cuDNN picks its algorithms there, outside the capture).
    """

    def __init__(self, fn: Callable, warmup: int = 3):
        self.fn, self.warmup = fn, warmup
        self._graphs: dict = {}

    @torch.inference_mode()
    def __call__(self, *xs: torch.Tensor):
        key = tuple((tuple(x.shape), x.dtype) for x in xs)
        if key not in self._graphs:
            self._graphs[key] = self._capture(xs)
        graph, inputs, outputs = self._graphs[key]
        for buffer, x in zip(inputs, xs):
            buffer.copy_(x, non_blocking=True)
        graph.replay()
        return outputs

    @torch.inference_mode()
    def _capture(self, xs):
        inputs = [x.clone() for x in xs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.fn(*inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.fn(*inputs)
        return graph, inputs, outputs


class FastExecutorModel:
    """RetinaFace on the executor, compiled by :class:`FusedProgram`; see the module docstring for options."""

    def __init__(self, weights: Mapping[str, np.ndarray], cfg: RetinaFaceConfig | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32",
                 channels_last: bool | None = None, cuda_graph: bool | None = None,
                 input_shape=(-1, 3, -1, -1)):
        if precision not in PRECISIONS:
            raise RetinaFaceError(f"unknown precision {precision!r}; expected one of: {', '.join(PRECISIONS)}")
        self.cfg = cfg or config_for_weights(weights)
        self.device = torch.device(device)
        on_gpu = self.device.type == "cuda"
        self.precision = precision
        self.channels_last = on_gpu if channels_last is None else bool(channels_last)
        self.cuda_graph = on_gpu if cuda_graph is None else bool(cuda_graph) and on_gpu
        self.network = trt.Builder(trt.Logger()).create_network(0)
        populate_network(trt, self.network, weights, self.cfg, input_shape=input_shape)
        self.program = FusedProgram(self.network, self.device, PRECISIONS[precision], self.channels_last)
        self._graphed = CudaGraphed(self.forward) if self.cuda_graph else None

    @classmethod
    def from_weights(cls, weights: str | os.PathLike | Mapping[str, np.ndarray], **kwargs) -> "FastExecutorModel":
        """From a ``.pth`` / ``.wts`` path or an already loaded name → array mapping."""
        if isinstance(weights, (str, os.PathLike)):
            from wts_export.weights import load_weights
            weights = load_weights(weights)
        return cls(weights, **kwargs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eager run: float32 [N, 3, H, W] → (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10]) float32."""
        outputs = self.program({INPUT_NAME: x})
        return tuple(outputs[name] for name in OUTPUT_NAMES)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._graphed is None:
            return self.forward(x)
        return self._graphed(x.to(self.device, torch.float32))
