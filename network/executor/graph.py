"""Tensors, layers and their properties: the part of the executor that mirrors TensorRT's object model.

Shapes use -1 for a dimension known only at run time, as TensorRT does. Shape inference runs over the whole
network in topological order (no recursion) and is cached until the network changes. A layer property that
the real layer does not have cannot be set: assigning it raises AttributeError, as on TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from network.executor.enums import DataType, LayerType


@dataclass(frozen=True)
class TensorInfo:
    """What shape inference knows about a tensor.

    shape: dims, -1 where only known at run time.
    value: for a shape tensor (an ``add_shape`` output), its value with -1 for unknown entries; else None.
    """

    shape: tuple[int, ...]
    dtype: DataType
    value: tuple[int, ...] | None = None


class Attr:
    """A layer property with a default (a value, or a function of the layer) and an optional converter."""

    def __init__(self, default: Any = None, convert: Callable | None = None, readonly: bool = False):
        self.default, self.convert, self.readonly = default, convert, readonly

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        if self.name in layer._attrs:
            return layer._attrs[self.name]
        return self.default(layer) if callable(self.default) else self.default

    def __set__(self, layer, value):
        if self.readonly:
            raise AttributeError(f"property '{self.name}' of '{type(layer).__name__}' object has no setter")
        layer._attrs[self.name] = self.convert(value) if self.convert else value
        layer._network._changed()


class _Strict:
    """Refuses to set attributes the class does not define, like a pybind11 object."""

    def __setattr__(self, name, value):
        if not name.startswith("_") and not isinstance(getattr(type(self), name, None), (Attr, property)):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


class ITensor(_Strict):
    """A tensor of the network: a network input or the output of a layer."""

    def __init__(self, network, producer: "ILayer | None" = None, index: int = 0,
                 name: str | None = None, dtype: DataType | None = None, shape: tuple[int, ...] | None = None):
        self._network, self._producer, self._index = network, producer, index
        self._name, self._dtype, self._shape = name, dtype, shape

    @property
    def name(self) -> str:
        if self._name is not None:
            return self._name
        suffix = "_output" if self._index == 0 else f"_output_{self._index}"
        return f"{self._producer.name}{suffix}"

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._network._info(self).shape

    @shape.setter
    def shape(self, value) -> None:
        if not self.is_network_input:
            raise RuntimeError(f"cannot set the shape of {self.name}: only network inputs have a settable shape")
        from network.executor.values import as_dims
        self._shape = as_dims(value)
        self._network._changed()

    @property
    def dtype(self) -> DataType:
        return self._network._info(self).dtype

    @property
    def is_network_input(self) -> bool:
        return self._producer is None

    @property
    def is_network_output(self) -> bool:
        return any(t is self for t in self._network._outputs)

    @property
    def is_shape_tensor(self) -> bool:
        return self._network._info(self).value is not None

    def __repr__(self) -> str:
        return f"<ITensor {self.name} {self.shape} {self.dtype.name}>"


class ILayer(_Strict):
    """Base of every layer: inputs, outputs, name. Subclasses define ``_infer`` and ``_compile``."""

    _type: LayerType

    def __init__(self, network, inputs: list, num_outputs: int = 1):
        self._network, self._inputs, self._attrs = network, list(inputs), {}
        self._index = network.num_layers
        self._name: str | None = None
        self._outputs = [ITensor(network, self, i) for i in range(num_outputs)]

    @property
    def name(self) -> str:
        if self._name is None:
            return f"(Unnamed Layer* {self._index}) [{self._type.name.title()}]"
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def type(self) -> LayerType:
        return self._type

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int):
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def get_output_type(self, index: int) -> DataType:
        return self._outputs[index].dtype

    def set_input(self, index: int, tensor: ITensor) -> None:
        if index > len(self._inputs):
            raise IndexError(f"{self.name}: input index {index} out of range")
        if index == len(self._inputs):
            self._inputs.append(tensor)
        else:
            self._inputs[index] = tensor
        self._network._changed()

    # Subclass hooks ------------------------------------------------------------------------------------
    def _infer(self, inputs: list[TensorInfo]) -> list[TensorInfo]:
        """Shapes and types of the outputs from those of the inputs (-1 = known at run time)."""
        raise NotImplementedError

    def _compile(self, inputs: list[TensorInfo], device) -> Callable:
        """Check the layer and return ``fn(list[torch.Tensor]) -> list[torch.Tensor]`` for ``device``."""
        raise NotImplementedError

    def _error(self, message: str) -> ValueError:
        return ValueError(f"{self.name}: {message}")
