"""The ``openvino`` backend: the ONNX export (from ``export-onnx``, or exported on the fly) in OpenVINO, on the CPU.

OpenVINO (``pip install '.[openvino]'`` in the clone) reads the same ONNX file as :mod:`runtime.backends.onnxruntime`
and compiles it for the CPU plugin. The plugin's default precision is not float32 everywhere: on CPUs with
bfloat16 instructions (AVX-512 BF16, AMX) it runs in bfloat16 unless told otherwise, so the inference precision
is set to float32 here; then results equal ONNX Runtime's to float32 rounding (the tests compare them). The
export is dynamic in N, H and W; OpenVINO's CPU plugin runs dynamic shapes without recompiling.

Inputs and outputs cross as NumPy arrays (one host copy each way); outputs are copied out of OpenVINO's buffers
(the next request overwrites them) and come back as torch tensors on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

from retinaface_trt.errors import RetinaFaceError
from retinaface_trt.extras import install_hint
from runtime.backends.base import Backend
from runtime.device import cpu_cores, resolve_device


class OpenVinoBackend(Backend):
    """A backend over one OpenVINO compiled model on the CPU.

    model:   an ``.onnx`` file, or ``.pth`` / ``.wts`` weights (exported with dynamic N, H, W, cached)
    threads: inference threads (0: one per core this process may use)
    ``fixed_input_size`` is (W, H) for a model exported at one size, None for a dynamic one.
    """

    name = "openvino"
    resize_hint = "export with --dynamic"

    def __init__(self, model: str | os.PathLike, device: str | None = "cpu", threads: int = 0):
        from runtime.backends.onnxruntime import exported_onnx, load_onnx_model, onnx_config

        ov = _import_openvino()
        self.device = resolve_device("cpu" if device in (None, "auto") else device)
        if self.device.type != "cpu":
            raise RetinaFaceError(f"the openvino backend runs on the CPU, not on {self.device}; use --device cpu")
        path = Path(model)
        self.cfg = onnx_config(load_onnx_model(path), path)       # checks the file and its metadata first
        onnx_file = path if path.suffix.lower() == ".onnx" else exported_onnx(path)
        core = ov.Core()
        network = core.read_model(str(onnx_file))
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads) or cpu_cores()}
        self._compiled = core.compile_model(network, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._input = self._compiled.input(0)
        self._outputs = _outputs(self._compiled)
        self._batch, self.fixed_input_size = _static_dims(self._input.get_partial_shape())

    def infer_impl(self, batch):
        """float32 [N, 3, H, W] → (loc [N, P, 4], conf [N, P, 2], landms [N, P, 10]) on the CPU."""
        import numpy as np
        import torch

        if self._batch is not None and batch.shape[0] != self._batch:
            raise RetinaFaceError(f"this ONNX model takes batches of {self._batch}, found {batch.shape[0]}; "
                                  "export with --dynamic for other batch sizes")
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        results = self._request.infer({self._input: array})
        return tuple(torch.from_numpy(np.array(results[output])) for output in self._outputs)

    def close_impl(self) -> None:
        self._request = self._compiled = None


def from_request(request):
    """The backend of a :class:`runtime.backends.BackendRequest` (the registry's entry point)."""
    from runtime.backends import onnx_model_of

    return OpenVinoBackend(onnx_model_of(request, "openvino"), device=request.device, threads=request.threads or 0)


def _import_openvino():
    try:
        import openvino
    except ImportError:
        raise RetinaFaceError(f"OpenVINO is not installed: {install_hint('openvino')} "
                              "(or use --backend onnxruntime or executor)") from None
    return openvino


def _outputs(compiled) -> list:
    """The compiled model's outputs in :data:`network.OUTPUT_NAMES` order; RetinaFaceError if they differ."""
    from network import OUTPUT_NAMES

    by_name = {name: output for output in compiled.outputs for name in output.get_names()}
    if not all(name in by_name for name in OUTPUT_NAMES):
        found = sorted(name for output in compiled.outputs for name in output.get_names())
        raise RetinaFaceError(f"expected ONNX outputs {', '.join(OUTPUT_NAMES)}, found {', '.join(found)}; "
                              "export the model with `retinaface-trt export-onnx`")
    return [by_name[name] for name in OUTPUT_NAMES]


def _static_dims(shape) -> tuple[int | None, tuple[int, int] | None]:
    """(N or None, (W, H) or None) of the input's partial shape [N, 3, H, W]: the dimensions fixed in the model."""
    static = [dim.get_length() if dim.is_static else None for dim in shape]
    height, width = static[2], static[3]
    return static[0], ((width, height) if height and width else None)
