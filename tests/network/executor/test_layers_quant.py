"""IQuantizeLayer / IDequantizeLayer of the executor against NumPy references of TensorRT's documented formulas,
the convolution that takes its kernel as input 1, and the constant folding that computes weights once."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from network.executor import Program, trt


def new_network():
    return trt.Builder(trt.Logger()).create_network(0)


def constant(net, array):
    array = np.asarray(array)           # (np.ascontiguousarray would make a 0-D scale 1-D)
    return net.add_constant(array.shape, trt.Weights(array)).get_output(0)


def run(net, output, **inputs):
    output.name = "out"
    net.mark_output(output)
    return Program(net)({k: torch.as_tensor(v) for k, v in inputs.items()})["out"]


def reference_quantize(x, scale):
    """TensorRT's formula in NumPy: np.rint rounds half to even."""
    return np.clip(np.rint(x.astype(np.float32) / np.float32(scale)), -128, 127).astype(np.int8)


def test_quantize_rounds_half_to_even_and_saturates():
    scale = np.float32(0.5)
    x = np.array([0.25, 0.75, 1.25, -0.25, -1.25, 0.26, 63.75, 1000.0, -1000.0, -64.25], np.float32)
    net = new_network()
    q = net.add_quantize(net.add_input("x", trt.float32, (10,)), constant(net, np.array(scale)), trt.int8)
    got = run(net, q.get_output(0), x=x)
    assert got.dtype == torch.int8
    # x / 0.5 = 0.5, 1.5, 2.5, -0.5, -2.5 (ties: to even), 0.52, 127.5 (tie: 128, saturated), ±2000 (saturated)
    assert got.tolist() == [0, 2, 2, 0, -2, 1, 127, 127, -128, -128]
    np.testing.assert_array_equal(got.numpy(), reference_quantize(x, scale))


def test_dequantize_per_axis_multiplies_each_channel():
    q = np.arange(-12, 12, dtype=np.int8).reshape(2, 3, 4)
    scales = np.array([0.5, 2.0, 0.125], np.float32)
    net = new_network()
    dq = net.add_dequantize(net.add_input("q", trt.int8, (2, 3, 4)), constant(net, scales), trt.float32)
    dq.axis = 1
    got = run(net, dq.get_output(0), q=q)
    np.testing.assert_array_equal(got.numpy(), q.astype(np.float32) * scales.reshape(1, 3, 1))


def test_per_channel_weights_quantize_and_dequantize_along_axis_0():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    scales = (np.abs(weights).reshape(4, -1).max(1) / 127).astype(np.float32)
    net = new_network()
    q = net.add_quantize(constant(net, weights), constant(net, scales), trt.int8)
    dq = net.add_dequantize(q.get_output(0), constant(net, scales), trt.float32)
    q.axis = dq.axis = 0
    got = run(net, dq.get_output(0))
    expected = np.stack([reference_quantize(w, s).astype(np.float32) * s for w, s in zip(weights, scales)])
    np.testing.assert_array_equal(got.numpy(), expected)
    assert np.abs(got.numpy() - weights).max() <= scales.max() / 2 + 1e-7


def test_a_zero_point_of_zeros_changes_nothing_and_any_other_is_refused():
    x = np.array([1.0, -3.0], np.float32)
    for zero_point, ok in ((np.array(0, np.int8), True), (np.array(1, np.int8), False)):
        net = new_network()
        q = net.add_quantize(net.add_input("x", trt.float32, (2,)), constant(net, np.array(1.0, np.float32)), trt.int8)
        q.set_input(2, constant(net, zero_point))
        if ok:
            assert run(net, q.get_output(0), x=x).tolist() == [1, -3]
        else:
            with pytest.raises(ValueError, match="zero point must be all zeros"):
                run(net, q.get_output(0), x=x)


def _quantize_with(scale, shape=(2, 3), axis=None, dtype=trt.float32, scale_input=False):
    net = new_network()
    x = net.add_input("x", dtype, shape)
    s = net.add_input("s", trt.float32, scale.shape) if scale_input else constant(net, scale)
    q = net.add_quantize(x, s, trt.int8)
    if axis is not None:
        q.axis = axis
    q.get_output(0).name = "out"
    net.mark_output(q.get_output(0))
    return net


@pytest.mark.parametrize("kwargs,message", [
    (dict(scale=np.ones(3, np.float32)), "needs axis set explicitly"),
    (dict(scale=np.ones(4, np.float32), axis=1), "the scale has 4 values but dimension 1"),
    (dict(scale=np.ones((3, 1), np.float32), axis=1), "scalar .per-tensor. or 1-D"),
    (dict(scale=np.array(1.0, np.float32), dtype=trt.float16), "the scale is FLOAT but the floating-point side is HALF"),
    (dict(scale=np.array(1.0, np.float32), scale_input=True), "must be a build-time constant"),
])
def test_undocumented_or_invalid_configurations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Program(_quantize_with(**kwargs))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("inf")])
def test_scales_must_be_positive_and_finite(scale):
    program = Program(_quantize_with(np.array(scale, np.float32)))
    with pytest.raises(ValueError, match="positive and finite"):
        program({"x": torch.ones(2, 3)})


def test_only_int8_is_emulated():
    net = new_network()
    q = net.add_quantize(net.add_input("x", trt.float32, (2,)), constant(net, np.array(1.0, np.float32)), trt.int32)
    with pytest.raises(ValueError, match="INT8 only"):
        _ = q.get_output(0).shape


def _qdq_conv_network(weights, scales, kernel_weights=None):
    net = new_network()
    x = net.add_input("x", trt.float32, (-1, weights.shape[1], -1, -1))
    q = net.add_quantize(constant(net, weights), constant(net, scales), trt.int8)
    dq = net.add_dequantize(q.get_output(0), constant(net, scales), trt.float32)
    q.axis = dq.axis = 0
    bias = np.linspace(-1, 1, weights.shape[0]).astype(np.float32)
    conv = net.add_convolution_nd(x, weights.shape[0], weights.shape[2:], kernel_weights or trt.Weights(),
                                  trt.Weights(bias))
    conv.padding_nd = (1, 1)
    conv.set_input(1, dq.get_output(0))
    relu = net.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    relu.get_output(0).name = "out"
    net.mark_output(relu.get_output(0))
    return net, dq, bias


@pytest.mark.parametrize("fold", [False, True])
def test_convolution_takes_its_kernel_from_input_1(fold):
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    scales = (np.abs(weights).reshape(6, -1).max(1) / 127).astype(np.float32)
    net, dq, bias = _qdq_conv_network(weights, scales)
    program = Program(net, fold_batchnorm=fold)
    x = torch.randn(2, 3, 9, 7)
    kernel = Program_constant(program, dq)
    expected = torch.relu(F.conv2d(x, kernel, torch.from_numpy(bias), 1, 1))
    torch.testing.assert_close(program({"x": x})["out"], expected, rtol=0, atol=1e-5)
    assert not torch.equal(kernel, torch.from_numpy(weights))     # the dequantized kernel, not the original


def Program_constant(program, layer):
    """The value a program computed at compile time for ``layer``'s output."""
    return program._constants[id(layer.get_output(0))]


def test_constant_weights_are_quantized_once_at_compile_time():
    rng = np.random.default_rng(2)
    weights = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    net, dq, _ = _qdq_conv_network(weights, np.full(4, 0.01, np.float32))
    program = Program(net)
    assert len(program._steps) == 2          # the convolution and the activation; the 5 constant layers ran once
    assert id(dq.get_output(0)) in program._constants


def test_kernel_weights_and_a_kernel_input_together_are_refused():
    weights = np.ones((2, 3, 3, 3), np.float32)
    net, _, _ = _qdq_conv_network(weights, np.ones(2, np.float32), kernel_weights=trt.Weights(weights))
    with pytest.raises(ValueError, match="kernel weights must be empty"):
        Program(net)


def test_scales_are_checked_on_the_first_run_only(monkeypatch):
    """The checks wait for the device, which a run captured in a CUDA graph must not do: later runs skip them
    (the scales are build-time constants, the same tensors each run) and still give the same values."""
    net = new_network()
    x = net.add_input("x", trt.float32, (4,))
    q = net.add_quantize(x, constant(net, np.array(np.float32(0.5))), trt.int8)
    d = net.add_dequantize(q.get_output(0), constant(net, np.array(np.float32(0.5))), trt.float32)
    d.get_output(0).name = "out"
    net.mark_output(d.get_output(0))
    program = Program(net)
    values = torch.tensor([0.3, -0.7, 1.26, 100.0])
    first = program({"x": values})["out"]
    checks = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: checks.append(1) or real(t))
    assert torch.equal(program({"x": values})["out"], first) and checks == []
