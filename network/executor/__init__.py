"""A TensorRT-compatible network definition that runs with PyTorch (CPU or CUDA).

It records the layers that the network code adds through the ``trt`` namespace in
:mod:`network.executor.trt` and runs them with PyTorch ops following TensorRT's documented layer semantics
(see docs/executor.md). It lets a ``.wts`` file and the hand-built network be validated on a machine
without TensorRT, and it is the numeric reference of the hand-built network in the tests.
"""

from network.executor import trt  # noqa: F401
from network.executor.program import Program  # noqa: F401
