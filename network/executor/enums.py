"""TensorRT enums, with the member names and values of the TensorRT 11.4 Python bindings.

Only the members the executor can run are listed; a member the executor does not support is simply
absent, so using it fails at once with an AttributeError, as a misspelt name would on TensorRT.
Values given by the real bindings (for example a real ``tensorrt.ActivationType.LEAKY_RELU`` passed
while checking the code against a real TensorRT module) are accepted and mapped by member name.
"""

from __future__ import annotations

import enum


class _TrtEnum(enum.Enum):
    """An enum that behaves like a pybind11 enum of the bindings: ``int(member)`` gives its value, and
    members of different enums never compare equal (even with the same value)."""

    def __int__(self) -> int:
        return self.value

    __index__ = __int__

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self.name}: {self.value}>"

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class DataType(_TrtEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


class ActivationType(_TrtEnum):
    RELU = 0
    SIGMOID = 1
    TANH = 2
    LEAKY_RELU = 3
    CLIP = 8


class ScaleMode(_TrtEnum):
    UNIFORM = 0
    CHANNEL = 1
    ELEMENTWISE = 2


class ElementWiseOperation(_TrtEnum):
    SUM = 0
    PROD = 1
    MAX = 2
    MIN = 3
    SUB = 4
    DIV = 5


class PoolingType(_TrtEnum):
    MAX = 0
    AVERAGE = 1


class PaddingMode(_TrtEnum):
    EXPLICIT_ROUND_DOWN = 0
    EXPLICIT_ROUND_UP = 1
    SAME_UPPER = 2
    SAME_LOWER = 3


class InterpolationMode(_TrtEnum):
    NEAREST = 0
    LINEAR = 1
    CUBIC = 2


class ResizeCoordinateTransformation(_TrtEnum):
    ALIGN_CORNERS = 0
    ASYMMETRIC = 1
    HALF_PIXEL = 2


class ResizeSelector(_TrtEnum):
    FORMULA = 0
    UPPER = 1


class ResizeRoundMode(_TrtEnum):
    HALF_UP = 0
    HALF_DOWN = 1
    FLOOR = 2
    CEIL = 3


class TensorIOMode(_TrtEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(_TrtEnum):
    STRONGLY_TYPED = 0
    PREFER_JIT_PYTHON_PLUGINS = 1
    PREFER_AOT_PYTHON_PLUGINS = 2


class LayerType(_TrtEnum):
    CONVOLUTION = 0
    CAST = 1
    ACTIVATION = 2
    POOLING = 3
    SCALE = 5
    SOFTMAX = 6
    CONCATENATION = 8
    ELEMENTWISE = 9
    UNARY = 11
    SHUFFLE = 13
    REDUCE = 14
    TOPK = 15
    GATHER = 16
    CONSTANT = 19
    SHAPE = 23
    RESIZE = 25
    QUANTIZE = 32
    DEQUANTIZE = 33
    SCATTER = 37
    NMS = 43


class UnaryOperation(_TrtEnum):
    EXP = 0
    LOG = 1
    SQRT = 2
    RECIP = 3
    ABS = 4
    NEG = 5
    CEIL = 17
    FLOOR = 18


class ReduceOperation(_TrtEnum):
    SUM = 0
    PROD = 1
    MAX = 2
    MIN = 3
    AVG = 4


class TopKOperation(_TrtEnum):
    MAX = 0
    MIN = 1


class GatherMode(_TrtEnum):
    DEFAULT = 0         # ELEMENT and ND are not run by the executor


class ScatterMode(_TrtEnum):
    ND = 1              # ELEMENT is not run by the executor


class BoundingBoxFormat(_TrtEnum):
    CORNER_PAIRS = 0
    CENTER_SIZES = 1


def coerce(value, enum_type: type[_TrtEnum]) -> _TrtEnum:
    """Map ``value`` (a member of ``enum_type`` or of the real bindings' enum of the same name) to ``enum_type``."""
    if isinstance(value, enum_type):
        return value
    name = getattr(value, "name", None)
    if name is None or type(value).__name__ != enum_type.__name__:
        raise TypeError(f"expected a {enum_type.__name__} member, got {value!r}")
    try:
        return enum_type[name]
    except KeyError:
        raise TypeError(f"{enum_type.__name__}.{name} is not supported by the executor") from None
