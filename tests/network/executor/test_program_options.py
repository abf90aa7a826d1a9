"""The executor's options (BatchNorm folding, float16 after folding, channels-last) against its reference mode."""

import pytest
import torch

from network.executor import Program
from network.executor.enums import LayerType
from tests.helpers import NetworkRun, random_resnet50_state_dict
from tests.tolerances import conv_arithmetic, retinaface_tolerance
from wts_export.weights import load_weights


def _image(h, w, seed):
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 50


@pytest.fixture(scope="module")
def mnet_weights(mnet_pth):
    return load_weights(mnet_pth)


def _max_abs(got, expected):
    return max(float((g - e).abs().max()) for g, e in zip(got, expected))


def _bound(run, outputs):
    """The float32 bound on two summation orders of this network (tests/tolerances.py)."""
    return retinaface_tolerance(run.network, outputs)


def test_mobilenet_folded_equals_reference(mnet_weights):
    x = _image(320, 384, 0)
    reference = NetworkRun(mnet_weights)
    expected = reference(x)
    assert _max_abs(NetworkRun(mnet_weights, fold_batchnorm=True)(x), expected) <= _bound(reference, expected)


def test_every_batchnorm_scale_is_folded(mnet_weights):
    run = NetworkRun(mnet_weights, fold_batchnorm=True)
    scales = sum(layer._type == LayerType.SCALE for layer in run.network._layers)
    assert scales > 0 and run.program.num_folded == scales


def test_nothing_is_folded_in_reference_mode(mnet_weights):
    assert NetworkRun(mnet_weights).program.num_folded == 0


def test_resnet50_folded_equals_reference():
    _, weights = random_resnet50_state_dict()
    x = _image(96, 128, 1)
    reference = NetworkRun(weights)
    bound = conv_arithmetic(reference.network).relative()
    for got, expected in zip(NetworkRun(weights, fold_batchnorm=True)(x), reference(x)):
        relative = float((got - expected).abs().max() / expected.abs().max())
        assert relative <= bound, (relative, bound)


def test_channels_last_changes_no_value(mnet_weights):
    # NCHW and NHWC convolutions take other kernels, whose sums run in another order on each instruction set
    # (1.3e-5 apart on AVX2, 9e-6 on AVX-512): equal within the float32 bound of this network's arithmetic.
    x = _image(96, 160, 3)
    run = NetworkRun(mnet_weights, fold_batchnorm=True)
    folded = run(x)
    nhwc = NetworkRun(mnet_weights, fold_batchnorm=True, channels_last=True)(x)
    assert _max_abs(nhwc, folded) <= _bound(run, folded)


@pytest.mark.parametrize("defect", ["height and width swapped", "channels reversed", "one activation lost"])
def test_the_channels_last_bound_still_catches_a_layout_defect(mnet_weights, monkeypatch, defect):
    # The bug that test guards: the NHWC path computing something else. Each defect, injected into the
    # executor's conversion of activations, must move the outputs past the bound the test allows.
    import network.executor.program as program

    x = _image(96, 96, 3)              # square, so a swapped height and width still runs
    run = NetworkRun(mnet_weights, fold_batchnorm=True)
    folded = run(x)
    state = {"calls": 0}
    original = program.Program._settle

    def faulty(self, y):
        y = original(self, y)
        if not y.is_floating_point() or y.dim() != 4:
            return y
        state["calls"] += 1
        if defect == "height and width swapped":
            return y.transpose(2, 3).contiguous(memory_format=torch.channels_last)
        if defect == "channels reversed":
            return y.flip(1).contiguous(memory_format=torch.channels_last)
        return y * 0 if state["calls"] == 5 else y

    monkeypatch.setattr(program.Program, "_settle", faulty)
    wrong = NetworkRun(mnet_weights, fold_batchnorm=True, channels_last=True)(x)
    assert state["calls"] > 0
    assert _max_abs(wrong, folded) > 10 * _bound(run, folded)


def test_float16_after_folding_stays_close(mnet_weights):
    x = _image(160, 160, 2)
    reference = NetworkRun(mnet_weights)(x)
    half = NetworkRun(mnet_weights, fold_batchnorm=True, dtype=torch.float16, channels_last=True)(x)
    assert all(t.dtype == torch.float32 for t in half)
    assert float((half[1] - reference[1]).abs().max()) <= 2e-2   # conf after softmax


def test_float16_after_folding_is_closer_than_a_float16_network(mnet_weights):
    # The bug the folded float16 path fixes: the float16 network definition runs BatchNorm in float16 (a
    # float16 scale on float16 activations), further from float32 than folding in float32 first.
    from network import INPUT_NAME, OUTPUT_NAMES, populate_network
    from network.executor import trt

    x = _image(160, 224, 5)
    reference = NetworkRun(mnet_weights)(x)
    after = NetworkRun(mnet_weights, fold_batchnorm=True, dtype=torch.float16)(x)
    network = trt.Builder(trt.Logger()).create_network(0)
    populate_network(trt, network, mnet_weights, input_shape=(-1, 3, -1, -1), half=True)
    outputs = Program(network)({INPUT_NAME: x})
    before = tuple(outputs[name] for name in OUTPUT_NAMES)
    assert _max_abs(after[::2], reference[::2]) < _max_abs(before[::2], reference[::2])


def test_float16_needs_folding(mnet_weights):
    with pytest.raises(ValueError, match="fold_batchnorm"):
        NetworkRun(mnet_weights, dtype=torch.float16)


def test_an_unset_leaky_relu_alpha_is_refused_even_when_folding():
    from network.executor import trt
    import numpy as np

    network = trt.Builder(trt.Logger()).create_network(0)
    x = network.add_input("x", trt.float32, (1, 1, 4, 4))
    conv = network.add_convolution_nd(x, 1, (1, 1), trt.Weights(np.ones(1, np.float32)))
    act = network.add_activation(conv.get_output(0), trt.ActivationType.LEAKY_RELU)
    network.mark_output(act.get_output(0))
    with pytest.raises(ValueError, match="alpha"):
        Program(network, fold_batchnorm=True)
