"""Runs an executor network with PyTorch: compile once for a device and a set of options, then call it.

One program, optimisations as options (as onnx.reference's ``optimized=True`` swaps kernels inside its one
evaluator):

* ``fold_batchnorm``: an ``IConvolutionLayer`` whose only consumer is an ``IScaleLayer`` in CHANNEL mode on
  axis 1 without power is folded with it (``w' = w·scale[k]``, ``b' = b·scale + shift``, in float64, then cast),
  explicit symmetric padding goes into the convolution call, and a RELU / LEAKY_RELU that is the only consumer
  runs in place on its output (:mod:`network.executor.folding`);
* ``dtype=torch.float16`` (with ``fold_batchnorm``) runs a float32 network in float16 *after* folding, as a
  TensorRT FP16 engine does:
  weights are converted once, activations are float16, a layer left with weights of its own (an unfolded
  scale, a constant) runs in float32 and its result is converted back; outputs are returned as float32;
* ``channels_last``: 4-D activations kept in NHWC memory order (same values, faster convolutions on GPUs).

Without options every layer runs through its own ``_compile`` (TensorRT's documented semantics, the reference).
In every mode a layer whose inputs are all build-time constants (an ``IConstantLayer`` and what is computed from
constants only, such as quantized and dequantized weights) runs once, when the program is compiled, as TensorRT
folds constants at build time; an input a layer requires to be a build-time constant (``_constant_inputs``: the
scales of quantize and dequantize) is checked to be one. Inputs are checked against the declared shapes (a -1
dim accepts any size); shape tensors live on the host.
"""

from __future__ import annotations

from typing import Mapping

import torch

from network.executor import folding
from network.executor.enums import LayerType
from network.executor.network_def import INetworkDefinition, topological_order
from network.executor.values import TORCH_DTYPES

_FLOAT_TYPES = (torch.float32, torch.float16)


class Program:
    """``Program(network, device, ...)(inputs) -> dict[name, tensor]``; options in the module docstring.

    ``num_folded`` tells how many scale layers were folded into convolutions.
    """

    def __init__(self, network: INetworkDefinition, device: str | torch.device = "cpu", *,
                 dtype: torch.dtype = torch.float32, fold_batchnorm: bool = False, channels_last: bool = False):
        if not network._outputs:
            raise ValueError("the network has no marked outputs")
        if dtype not in _FLOAT_TYPES:
            raise ValueError(f"dtype must be torch.float32 or torch.float16, not {dtype}")
        if dtype == torch.float16 and not fold_batchnorm:
            raise ValueError("dtype=torch.float16 converts the network after folding: pass fold_batchnorm=True "
                             "(for a float16 network definition, build it with populate_network(half=True))")
        self.device, self.dtype = torch.device(device), dtype
        self.fold_batchnorm, self.channels_last = bool(fold_batchnorm), bool(channels_last)
        self._network = network
        self._inputs = [(t.name, t.shape, TORCH_DTYPES[t.dtype], id(t)) for t in network._inputs]
        self._outputs = [(t.name, id(t)) for t in network._outputs]
        order = topological_order([l for l in network._layers if id(l) in _needed_layers(network)])
        self.num_folded = 0
        self._steps = self._compile(order)

    @torch.inference_mode()
    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = dict(self._constants)
        values.update((key, self._entry(name, shape, dtype, inputs)) for name, shape, dtype, key in self._inputs)
        for fn, input_keys, output_keys in self._steps:
            values.update(zip(output_keys, fn([values[k] for k in input_keys])))
        return {name: self._exit(values[key]) for name, key in self._outputs}

    # Compilation ---------------------------------------------------------------------------------------
    def _compile(self, order) -> list:
        consumers = folding.consumers(order, self._network)
        steps, absorbed, self._constants = [], set(), {}
        for layer in order:
            if id(layer) in absorbed:
                continue
            self._check_constant_inputs(layer)
            if all(id(t) in self._constants for t in layer._inputs):     # no inputs: an IConstantLayer
                self._fold_constant(layer)
                continue
            kernel = self._constants.get(id(layer._inputs[1])) if len(layer._inputs) > 1 else None
            fused = folding.fuse_convolution(layer, consumers, kernel) if self.fold_batchnorm else None
            if fused is not None:
                absorbed.update(id(extra) for extra in fused.absorbed)
                self.num_folded += fused.folded
                steps.append((self._convolution(fused), [id(layer._inputs[0])], [id(fused.output)]))
            else:
                steps.append((self._layer(layer), [id(t) for t in layer._inputs], [id(t) for t in layer._outputs]))
        return steps

    @torch.inference_mode()
    def _fold_constant(self, layer) -> None:
        """Run ``layer`` now, on its constant inputs; its outputs become constants of the program."""
        outputs = self._layer(layer)([self._constants[id(t)] for t in layer._inputs])
        self._constants.update((id(t), y) for t, y in zip(layer._outputs, outputs))

    def _check_constant_inputs(self, layer) -> None:
        for index in getattr(layer, "_constant_inputs", ()):
            if index < len(layer._inputs) and id(layer._inputs[index]) not in self._constants:
                raise ValueError(f"{layer.name}: input {index} must be a build-time constant (TensorRT requires "
                                 f"it), but {layer._inputs[index].name} is computed at run time")

    def _convolution(self, fused: folding.FusedConvolution):
        weight, bias = (None if t is None else t.to(self.device, self.dtype) for t in (fused.weight, fused.bias))
        if self.channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        return fused.runner(weight, bias)

    def _layer(self, layer):
        fn = layer._compile([self._network._info(t) for t in layer._inputs], self.device)
        if self.dtype == torch.float32 and not self.channels_last:
            return fn
        keeps_float32 = layer._type in (LayerType.SCALE, LayerType.CONSTANT) and self.dtype != torch.float32

        def run(xs):
            if keeps_float32:                # its weights are float32: compute there, convert the result
                xs = [x.float() if x.is_floating_point() else x for x in xs]
            return [self._settle(y) for y in fn(xs)]
        return run

    # Values ----------------------------------------------------------------------------------------------
    def _entry(self, name, shape, declared, inputs) -> torch.Tensor:
        if name not in inputs:
            raise KeyError(f"missing input {name!r}; the network's inputs are {[n for n, *_ in self._inputs]}")
        x = inputs[name]
        if x.dtype not in (declared, self.dtype if declared == torch.float32 else declared):
            raise TypeError(f"input {name!r} must be {declared}, got {x.dtype}")
        if x.dim() != len(shape) or any(d not in (-1, s) for d, s in zip(shape, x.shape)):
            raise ValueError(f"input {name!r} has shape {tuple(x.shape)}, the network expects {shape}")
        return self._settle(x.to(self.device))

    def _settle(self, y: torch.Tensor) -> torch.Tensor:
        """A float32 tensor in the run dtype; 4-D floating tensors in the memory format of the options."""
        if not y.is_floating_point():
            return y
        if y.dtype == torch.float32 and self.dtype == torch.float16:
            y = y.half()
        return y.contiguous(memory_format=torch.channels_last) if self.channels_last and y.dim() == 4 else y

    def _exit(self, y: torch.Tensor) -> torch.Tensor:
        return y.float() if y.is_floating_point() else y


def _needed_layers(network: INetworkDefinition) -> set[int]:
    produced_by = {id(t): layer for layer in network._layers for t in layer._outputs}
    needed, stack = set(), [produced_by.get(id(t)) for t in network._outputs]
    while stack:
        layer = stack.pop()
        if layer is None or id(layer) in needed:
            continue
        needed.add(id(layer))
        stack.extend(produced_by.get(id(t)) for t in layer._inputs)
    return needed
