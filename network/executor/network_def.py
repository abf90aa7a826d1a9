"""``INetworkDefinition``, ``Builder`` and ``Logger`` of the executor, with TensorRT 11's method names.

The network is always strongly typed, as in TensorRT 11: tensor types follow from the input types and the
weights, and a layer whose weights do not match its input type is an error.
"""

from __future__ import annotations

import logging

from network.executor import layers_math as ops
from network.executor import layers_nn as nn
from network.executor import layers_quant as quant
from network.executor import layers_select as sel
from network.executor import layers_shape as sh
from network.executor.enums import _TrtEnum, ActivationType, DataType, ElementWiseOperation, PoolingType, ScaleMode, coerce
from network.executor.enums import ReduceOperation, ScatterMode, TopKOperation, UnaryOperation
from network.executor.graph import ILayer, ITensor, TensorInfo
from network.executor.values import as_dims, as_weights


_LOG = logging.getLogger("retinaface_trt.executor")


class INetworkDefinition:
    """Records layers in the order they are added; shapes are inferred on demand and cached."""

    def __init__(self, flags: int = 0):
        self._flags = int(flags)
        self._layers: list[ILayer] = []
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._cache: dict[int, TensorInfo] | None = None
        self.name = "Unnamed Network 0"

    # Queries -------------------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self._layers)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def __len__(self) -> int:
        return len(self._layers)

    # Inputs and outputs --------------------------------------------------------------------------------
    def add_input(self, name: str, dtype, shape) -> ITensor:
        if any(t.name == name for t in self._inputs):
            raise ValueError(f"a network input called {name!r} already exists")
        tensor = ITensor(self, name=str(name), dtype=coerce(dtype, DataType), shape=as_dims(shape))
        self._inputs.append(tensor)
        self._changed()
        return tensor

    def mark_output(self, tensor: ITensor) -> None:
        if any(t.name == tensor.name for t in self._outputs):
            raise ValueError(f"an output called {tensor.name!r} is already marked; output names must be unique")
        self._outputs.append(tensor)

    # Layers --------------------------------------------------------------------------------------------
    def _add(self, layer: ILayer) -> ILayer:
        self._layers.append(layer)
        self._changed()
        return layer

    def add_convolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias=None):
        layer = nn.IConvolutionLayer(self, [input])
        layer._attrs.update(num_output_maps=int(num_output_maps), kernel_size_nd=as_dims(kernel_shape),
                            kernel=as_weights(kernel), bias=as_weights(bias))
        return self._add(layer)

    def add_pooling_nd(self, input, type, window_size):
        layer = nn.IPoolingLayer(self, [input])
        layer._attrs.update(type=coerce(type, PoolingType), window_size_nd=as_dims(window_size))
        return self._add(layer)

    def add_scale(self, input, mode, shift=None, scale=None, power=None):
        layer = nn.IScaleLayer(self, [input])
        layer._attrs.update(mode=coerce(mode, ScaleMode), shift=as_weights(shift), scale=as_weights(scale),
                            power=as_weights(power))
        return self._add(layer)

    def add_activation(self, input, type):
        layer = nn.IActivationLayer(self, [input])
        layer._attrs["type"] = coerce(type, ActivationType)
        return self._add(layer)

    def add_softmax(self, input):
        return self._add(nn.ISoftMaxLayer(self, [input]))

    def add_elementwise(self, input1, input2, op):
        layer = sh.IElementWiseLayer(self, [input1, input2])
        layer._attrs["op"] = coerce(op, ElementWiseOperation)
        return self._add(layer)

    def add_concatenation(self, inputs):
        return self._add(sh.IConcatenationLayer(self, list(inputs)))

    def add_shuffle(self, input):
        return self._add(sh.IShuffleLayer(self, [input]))

    def add_resize(self, input):
        return self._add(sh.IResizeLayer(self, [input]))

    def add_shape(self, input):
        return self._add(sh.IShapeLayer(self, [input]))

    def add_cast(self, input, to_type):
        layer = sh.ICastLayer(self, [input])
        layer._attrs["to_type"] = coerce(to_type, DataType)
        return self._add(layer)

    def add_constant(self, shape, weights):
        layer = sh.IConstantLayer(self, [])
        layer._attrs.update(shape=as_dims(shape), weights=as_weights(weights))
        return self._add(layer)

    def add_unary(self, input, op):
        layer = ops.IUnaryLayer(self, [input])
        layer._attrs["op"] = coerce(op, UnaryOperation)
        return self._add(layer)

    def add_reduce(self, input, op, axes, keep_dims):
        layer = ops.IReduceLayer(self, [input])
        layer._attrs.update(op=coerce(op, ReduceOperation), axes=int(axes), keep_dims=bool(keep_dims))
        return self._add(layer)

    def add_gather(self, input, indices, axis):
        layer = sel.IGatherLayer(self, [input, indices])
        layer._attrs["axis"] = int(axis)
        return self._add(layer)

    def add_topk(self, input, op, k, axes):
        layer = sel.ITopKLayer(self, [input])
        layer._attrs.update(op=coerce(op, TopKOperation), k=int(k), axes=int(axes))
        return self._add(layer)

    def add_scatter(self, data, indices, updates, mode):
        layer = sel.IScatterLayer(self, [data, indices, updates])
        layer._attrs["mode"] = coerce(mode, ScatterMode)
        return self._add(layer)

    def add_nms(self, boxes, scores, max_output_boxes_per_class):
        return self._add(sel.INMSLayer(self, [boxes, scores, max_output_boxes_per_class]))

    def add_quantize(self, input, scale, output_type):
        layer = quant.IQuantizeLayer(self, [input, scale])
        layer._attrs["to_type"] = coerce(output_type, DataType)
        return self._add(layer)

    def add_dequantize(self, input, scale, output_type):
        layer = quant.IDequantizeLayer(self, [input, scale])
        layer._attrs["to_type"] = coerce(output_type, DataType)
        return self._add(layer)

    # Shape inference -----------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._cache = None

    def _info(self, tensor: ITensor) -> TensorInfo:
        if self._cache is None:
            self._infer_all()
        try:
            return self._cache[id(tensor)]
        except KeyError:
            raise ValueError(f"tensor {tensor.name} does not belong to this network") from None

    def _infer_all(self) -> None:
        # The cache fills in topological order, so a default that depends on an input's rank can read it.
        self._cache = infos = {id(t): TensorInfo(t._shape, t._dtype) for t in self._inputs}
        try:
            for layer in topological_order(self._layers):
                outputs = layer._infer([infos[id(t)] for t in layer._inputs])
                infos.update((id(t), info) for t, info in zip(layer._outputs, outputs))
        except BaseException:
            self._cache = None
            raise


def topological_order(layers: list[ILayer]) -> list[ILayer]:
    """Layers ordered so that each comes after the producers of its inputs (stable for added order)."""
    produced_by = {id(t): layer for layer in layers for t in layer._outputs}
    done: set[int] = set()
    order: list[ILayer] = []
    for root in layers:
        stack = [(root, False)]
        while stack:
            layer, expanded = stack.pop()
            if id(layer) in done:
                continue
            if expanded:
                done.add(id(layer))
                order.append(layer)
                continue
            stack.append((layer, True))
            for t in reversed(layer._inputs):
                producer = produced_by.get(id(t))
                if producer is not None and id(producer) not in done:
                    stack.append((producer, False))
    return order


class Severity(_TrtEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class Logger:
    """``trt.Logger``: ``Logger.Severity`` and its members as class attributes; logs to ``logging``."""

    Severity = Severity  # noqa: PLW0127  (exposed as trt.Logger.Severity, as in the bindings)
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self, min_severity: Severity = Severity.WARNING):
        self.min_severity = min_severity

    def log(self, severity: Severity, msg: str) -> None:
        if severity.value <= self.min_severity.value:
            _LOG.log(_LEVELS[severity], msg)


_LEVELS = {Severity.INTERNAL_ERROR: logging.CRITICAL, Severity.ERROR: logging.ERROR,
           Severity.WARNING: logging.WARNING, Severity.INFO: logging.INFO, Severity.VERBOSE: logging.DEBUG}


class Builder:
    """``trt.Builder`` of the executor: it creates networks; engines are made by :mod:`network.executor.program`."""

    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)
