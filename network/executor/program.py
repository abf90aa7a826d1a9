"""Runs an executor network with PyTorch: compile once per device, then call with input tensors."""

from __future__ import annotations

from typing import Mapping

import torch

from network.executor.network_def import INetworkDefinition, topological_order
from network.executor.values import TORCH_DTYPES


class Program:
    """The layers needed for the marked outputs, compiled for one device.

    ``Program(network, device)(inputs) -> dict[name, tensor]``. Inputs are checked against the declared
    shapes (a -1 dim accepts any size) and types; shape tensors live on the host.
    """

    def __init__(self, network: INetworkDefinition, device: str | torch.device = "cpu"):
        if not network._outputs:
            raise ValueError("the network has no marked outputs")
        self.device = torch.device(device)
        self._network = network
        info = network._info
        self._inputs = [(t.name, t.shape, TORCH_DTYPES[t.dtype], id(t)) for t in network._inputs]
        self._outputs = [(t.name, id(t)) for t in network._outputs]
        needed = _needed_layers(network)
        self._steps = []
        for layer in topological_order([l for l in network._layers if id(l) in needed]):
            fn = layer._compile([info(t) for t in layer._inputs], self.device)
            self._steps.append((fn, [id(t) for t in layer._inputs], [id(t) for t in layer._outputs]))

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = {}
        for name, shape, dtype, key in self._inputs:
            values[key] = self._checked_input(inputs, name, shape, dtype)
        for fn, input_keys, output_keys in self._steps:
            values.update(zip(output_keys, fn([values[k] for k in input_keys])))
        return {name: values[key] for name, key in self._outputs}

    def _checked_input(self, inputs, name, shape, dtype) -> torch.Tensor:
        if name not in inputs:
            raise KeyError(f"missing input {name!r}; the network's inputs are {[n for n, *_ in self._inputs]}")
        x = inputs[name]
        if x.dtype != dtype:
            raise TypeError(f"input {name!r} must be {dtype}, got {x.dtype}")
        if x.dim() != len(shape) or any(d not in (-1, s) for d, s in zip(shape, x.shape)):
            raise ValueError(f"input {name!r} has shape {tuple(x.shape)}, the network expects {shape}")
        return x.to(self.device)


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
