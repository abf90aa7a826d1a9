"""TensorRT fakes that *compute*, for the selftest's TensorRT path on a machine without TensorRT.

They extend tests/runtime/backends/tensorrt/fakes.py (which records what the build and the runner do) so
that a whole selftest case runs through the real code: ``build_serialized`` populates a network of the
executor through :class:`ComputingBuilder`, whose plan names that network; :class:`ComputingRuntime`
deserializes the plan into an engine whose execution context runs the network with the executor
(BatchNorm folded in float32, as an engine would) on the CPU memory behind the addresses it is given, exactly where
``TensorRTBackend`` put the input and its output buffers.
"""

from __future__ import annotations

import ctypes
import math

import torch

from tests.runtime.backends.tensorrt.fakes import FakeBuilder, FakeContext, FakeCuda, FakeEngine, FakeRuntime, builder_trt


def computing_trt(version: str = "10.16.1.11", cuda: FakeCuda | None = None, reject: str | None = None):
    """A fake ``trt`` whose builds can be deserialized and run; ``reject``: every build fails with this
    message, logged as TensorRT logs it (an ERROR through the process's logger) before returning None."""
    cuda = cuda or FakeCuda()
    trt = builder_trt(version, cuda)
    trt.plans, trt.reject = {}, reject
    trt.Builder = lambda logger: ComputingBuilder(trt, logger)
    trt.Runtime = lambda logger: ComputingRuntime(trt, logger)
    return trt


class ComputingBuilder(FakeBuilder):
    def __init__(self, trt, logger):
        super().__init__(trt, logger, accept_cache=lambda data: True)

    def build_serialized_network(self, network, config):
        super().build_serialized_network(network, config)
        if self.trt.reject:
            self.logger.log(self.trt.ILogger.Severity.ERROR, self.trt.reject)
            return None
        profile = next(call[1] for call in config.calls if call[0] == "add_optimization_profile")
        plan = f"computing plan {len(self.trt.plans)}".encode() * 8
        self.trt.plans[plan] = (network, profile[1:])
        return plan


class ComputingRuntime(FakeRuntime):
    def deserialize_cuda_engine(self, plan):
        super().deserialize_cuda_engine(plan)
        network, profile = self.trt.plans[bytes(plan)]
        return ComputingEngine(self.trt, network, profile)


class ComputingEngine(FakeEngine):
    """The engine of one built network: its outputs, profile and (dets' rows) keep_top_k."""

    def __init__(self, trt, network, profile):
        from network.executor import Program

        outputs = [network.get_output(i) for i in range(network.num_outputs)]
        keep = outputs[0].shape[1] if outputs[0].name == "dets" else 0
        super().__init__(trt, profile, tuple(t.name for t in outputs), keep=keep)
        # BatchNorm folded as an engine does, except in the strongly typed float16 graph (float16 weights).
        half = any(network.get_layer(i).name == "input.half" for i in range(network.num_layers))
        self.program = Program(network, fold_batchnorm=not half)
        self.run_input: list = []            # what the engine was given, run by run

    @property
    def context_type(self):
        return ComputingContext


class ComputingContext(FakeContext):
    def execute_async_v3(self, stream_handle):
        if not super().execute_async_v3(stream_handle):
            return False
        engine = self.engine
        batch = _view(self.addresses["input"], self.shape, torch.float32)
        engine.run_input.append(batch.clone())
        outputs = engine.program({"input": batch})
        for name in engine.names[1:]:
            target = _view(self.addresses[name], self.get_tensor_shape(name), outputs[name].dtype)
            target.copy_(outputs[name])
        return True


def _view(address: int, shape, dtype) -> torch.Tensor:
    """The CPU memory at ``address`` as a tensor of ``shape`` and ``dtype`` (no copy)."""
    count = math.prod(shape)
    size = count * torch.empty((), dtype=dtype).element_size()
    return torch.frombuffer((ctypes.c_char * size).from_address(address), dtype=dtype, count=count).view(tuple(shape))
