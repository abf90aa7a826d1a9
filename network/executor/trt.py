"""The executor's ``trt`` namespace: pass it where the real ``tensorrt`` module would go.

    from network.executor import trt
    network = trt.Builder(trt.Logger()).create_network(0)
    populate_network(trt, network, weights, cfg)

Names, argument names and enum members are TensorRT 11.4's; only what the executor can run is present.
"""

from network.executor.enums import (ActivationType, DataType, ElementWiseOperation, InterpolationMode,  # noqa: F401
                                    LayerType, NetworkDefinitionCreationFlag, PaddingMode, PoolingType,
                                    ResizeCoordinateTransformation, ResizeRoundMode, ResizeSelector, ScaleMode,
                                    TensorIOMode)
from network.executor.enums import (BoundingBoxFormat, GatherMode, ReduceOperation, ScatterMode,  # noqa: F401
                                    TopKOperation, UnaryOperation)
from network.executor.layers_math import IReduceLayer, IUnaryLayer  # noqa: F401
from network.executor.layers_select import IGatherLayer, INMSLayer, IScatterLayer, ITopKLayer  # noqa: F401
from network.executor.layers_quant import IDequantizeLayer, IQuantizeLayer  # noqa: F401
from network.executor.graph import ILayer, ITensor  # noqa: F401
from network.executor.layers_nn import (IActivationLayer, IConvolutionLayer, IPoolingLayer,  # noqa: F401
                                        IScaleLayer, ISoftMaxLayer)
from network.executor.layers_shape import (ICastLayer, IConcatenationLayer, IConstantLayer,  # noqa: F401
                                           IElementWiseLayer, IResizeLayer, IShapeLayer, IShuffleLayer)
from network.executor.network_def import Builder, INetworkDefinition, Logger  # noqa: F401
from network.executor.values import Weights, volume  # noqa: F401

__version__ = "11.4.0.106-executor"

float32 = DataType.FLOAT
float16 = DataType.HALF
int8 = DataType.INT8
int32 = DataType.INT32
int64 = DataType.INT64
uint8 = DataType.UINT8
bool = DataType.BOOL  # noqa: A001  (the bindings export this name)
