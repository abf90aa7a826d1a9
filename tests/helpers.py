"""Helpers shared by test modules (not fixtures): seeded random ResNet-50 weights, the network on the executor."""

from __future__ import annotations

import torch


def random_resnet50_state_dict(seed=0):
    """A ResNet-50 RetinaFace with seeded random weights that behave like trained ones
    (:func:`wts_export.random_weights.random_weights`). Returns (model in eval mode, {name: float32 array})."""
    from wts_export.random_weights import random_weights

    return random_weights("resnet50", seed)


class NetworkRun:
    """The hand-built network on the executor as a callable: ``NetworkRun(weights)(x) -> (loc, conf, landms)``.

    ``program_options`` go to :class:`network.executor.Program` (device, dtype, fold_batchnorm, channels_last);
    without them every layer runs as TensorRT documents it (the executor's reference mode).
    """

    def __init__(self, weights, input_shape=(-1, 3, -1, -1), **program_options):
        from network import populate_network
        from network.executor import Program, trt

        self.network = trt.Builder(trt.Logger()).create_network(0)
        populate_network(trt, self.network, weights, input_shape=input_shape)
        self.program = Program(self.network, **program_options)

    def __call__(self, x: torch.Tensor):
        from network import INPUT_NAME, OUTPUT_NAMES

        outputs = self.program({INPUT_NAME: x})
        return tuple(outputs[name] for name in OUTPUT_NAMES)


def require_tensorrt_and_gpu():
    """(torch, tensorrt) for a test module of the ``tensorrt`` marker; skips the whole module, with the reason,
    without ``import tensorrt`` or a CUDA device. Call it at module level, before importing TensorRT code."""
    import pytest

    tensorrt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install '.[tensorrt]' in the clone)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device; PyTorch sees none", allow_module_level=True)
    return torch, tensorrt
