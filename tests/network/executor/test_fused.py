"""FusedProgram (BN folded, fused activations) against the layer-by-layer executor Program."""

import numpy as np
import pytest
import torch

from network.executor import Program, trt
from network.executor.enums import LayerType
from network.fast_runner import FastExecutorModel
from network.populate import INPUT_NAME, OUTPUT_NAMES, populate_network
from tests.network.test_populate import random_resnet50_state_dict
from wts_export.weights import load_weights


def _network(weights):
    network = trt.Builder(trt.Logger()).create_network(0)
    populate_network(trt, network, weights, input_shape=(-1, 3, -1, -1))
    return network


def _image(h, w, seed):
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 50


@pytest.fixture(scope="module")
def mnet_weights(mnet_pth):
    return load_weights(mnet_pth)


def test_mobilenet_fused_equals_executor(mnet_weights):
    x = _image(320, 384, 0)
    expected = Program(_network(mnet_weights))({INPUT_NAME: x})
    got = FastExecutorModel(mnet_weights)(x)
    for name, g in zip(OUTPUT_NAMES, got):
        assert float((g - expected[name]).abs().max()) <= 1e-4, name


def test_every_batchnorm_scale_is_folded(mnet_weights):
    model = FastExecutorModel(mnet_weights)
    scales = sum(layer._type == LayerType.SCALE for layer in model.network._layers)
    assert scales > 0 and model.program.num_folded == scales


def test_resnet50_fused_equals_executor():
    _, weights = random_resnet50_state_dict()
    x = _image(96, 128, 1)
    expected = Program(_network(weights))({INPUT_NAME: x})
    got = FastExecutorModel(weights)(x)
    for name, g in zip(OUTPUT_NAMES, got):
        relative = float((g - expected[name]).abs().max() / expected[name].abs().max())
        assert relative <= 1e-4, (name, relative)


def test_float16_channels_last_stays_close(mnet_weights):
    x = _image(160, 160, 2)
    reference = FastExecutorModel(mnet_weights)(x)[1]
    half = FastExecutorModel(mnet_weights, precision="fp16", channels_last=True)(x)[1]
    assert half.dtype == torch.float32
    assert float((half - reference).abs().max()) <= 2e-2   # conf after softmax, float16 network
