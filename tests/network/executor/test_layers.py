"""Executor layers against PyTorch, one behaviour per test, on impulses and random data."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from network.executor import Program, trt


def new_network():
    return trt.Builder(trt.Logger()).create_network(0)


def run(network, output, **inputs):
    output.name = "out"
    network.mark_output(output)
    return Program(network)({k: torch.as_tensor(v) for k, v in inputs.items()})["out"]


@pytest.mark.parametrize("stride,padding,size", [(2, 1, (9, 12)), (1, 1, (5, 5)), (2, 3, (16, 11))])
def test_conv_impulse_matches_pytorch(stride, padding, size):
    """A single hot pixel at every position shows where each output reads from (stride, padding, no flip)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    net = new_network()
    x = net.add_input("x", trt.float32, (-1, 3, -1, -1))
    conv = net.add_convolution_nd(x, 4, (3, 3), trt.Weights(weight), trt.Weights(bias))
    conv.stride_nd, conv.padding_nd = (stride, stride), (padding, padding)
    out = conv.get_output(0)
    net.mark_output(out)
    program = Program(net)
    for y, x_ in [(0, 0), (size[0] - 1, size[1] - 1), (size[0] // 2, 1)]:
        impulse = torch.zeros(1, 3, *size)
        impulse[0, 1, y, x_] = 1.0
        expected = F.conv2d(impulse, torch.from_numpy(weight), torch.from_numpy(bias), stride, padding)
        got = program({"x": impulse})[out.name]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_depthwise_conv_groups():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    net = new_network()
    x = net.add_input("x", trt.float32, (2, 6, 7, 5))
    conv = net.add_convolution_nd(x, 6, (3, 3), trt.Weights(weight), trt.Weights())
    conv.num_groups, conv.padding_nd, conv.stride_nd = 6, (1, 1), (2, 2)
    data = torch.randn(2, 6, 7, 5)
    got = run(net, conv.get_output(0), x=data)
    torch.testing.assert_close(got, F.conv2d(data, torch.from_numpy(weight), None, 2, 1, groups=6))


@pytest.mark.parametrize("src,dst", [((20, 20), (40, 40)), ((20, 33), (39, 65)), ((5, 7), (9, 13)), ((1, 3), (2, 5))])
def test_nearest_resize_matches_pytorch_for_any_size(src, dst):
    """ASYMMETRIC + FLOOR picks floor(dst·in/out): PyTorch's nearest, also when the ratio is not 2."""
    data = torch.arange(2 * 3 * src[0] * src[1], dtype=torch.float32).reshape(2, 3, *src)
    net = new_network()
    x = net.add_input("x", trt.float32, (-1, 3, -1, -1))
    like = net.add_input("like", trt.float32, (-1, 3, -1, -1))
    resize = net.add_resize(x)
    resize.set_input(1, net.add_shape(like).get_output(0))
    resize.resize_mode = trt.InterpolationMode.NEAREST
    resize.coordinate_transformation = trt.ResizeCoordinateTransformation.ASYMMETRIC
    resize.nearest_rounding = trt.ResizeRoundMode.FLOOR
    got = run(net, resize.get_output(0), x=data, like=torch.zeros(2, 3, *dst))
    torch.testing.assert_close(got, F.interpolate(data, size=dst, mode="nearest"), rtol=0, atol=0)


def test_resize_half_pixel_round_half_up_differs_from_floor():
    """Another coordinate rule gives other indices: the attributes really are honoured."""
    data = torch.arange(5, dtype=torch.float32).reshape(1, 1, 1, 5)
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 1, 1, 5))
    resize = net.add_resize(x)
    resize.shape = (1, 1, 1, 3)
    resize.coordinate_transformation = trt.ResizeCoordinateTransformation.HALF_PIXEL
    resize.nearest_rounding = trt.ResizeRoundMode.HALF_UP
    got = run(net, resize.get_output(0), x=data)
    # HALF_PIXEL: (d + 0.5)·5/3 − 0.5 = 0.33, 2.0, 3.67 → rounded half up: 0, 2, 4.
    assert got.flatten().tolist() == [0.0, 2.0, 4.0]


def test_leaky_relu_without_alpha_is_refused():
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 2, 3, 3))
    act = net.add_activation(x, trt.ActivationType.LEAKY_RELU)
    with pytest.raises(ValueError, match="alpha set explicitly"):
        run(net, act.get_output(0), x=torch.randn(1, 2, 3, 3))


def test_leaky_relu_slope():
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 1, 1, 4))
    act = net.add_activation(x, trt.ActivationType.LEAKY_RELU)
    act.alpha = 0.1
    got = run(net, act.get_output(0), x=torch.tensor([[[[-2.0, -0.5, 0.0, 3.0]]]]))
    torch.testing.assert_close(got.flatten(), torch.tensor([-0.2, -0.05, 0.0, 3.0]))


def test_unknown_attribute_fails_like_tensorrt():
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 2, 3, 3))
    layer = net.add_activation(x, trt.ActivationType.RELU)
    with pytest.raises(AttributeError, match="no attribute 'negative_slope'"):
        layer.negative_slope = 0.1


def test_float64_weights_are_refused():
    with pytest.raises(ValueError, match="Could not implicitly convert"):
        trt.Weights(np.zeros(3))


def test_strong_typing_rejects_float32_weights_on_half_input():
    net = new_network()
    x = net.add_cast(net.add_input("x", trt.float32, (1, 2, 4, 4)), trt.float16).get_output(0)
    conv = net.add_convolution_nd(x, 2, (1, 1), trt.Weights(np.ones((2, 2, 1, 1), np.float32)),
                                  trt.Weights(trt.float16))
    with pytest.raises(ValueError, match="strongly typed"):
        run(net, conv.get_output(0), x=torch.randn(1, 2, 4, 4))


def test_kernel_count_is_checked():
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 3, 4, 4))
    conv = net.add_convolution_nd(x, 2, (3, 3), trt.Weights(np.ones(10, np.float32)), trt.Weights())
    with pytest.raises(ValueError, match="count 10 but 54 was expected"):
        run(net, conv.get_output(0), x=torch.randn(1, 3, 4, 4))


def test_concat_and_softmax_use_documented_default_axes():
    """Default axis = rank − 3: channels for NCHW, but the batch axis for 3-D tensors."""
    net = new_network()
    a = net.add_input("a", trt.float32, (2, 3, 4))
    cat = net.add_concatenation([a, a])
    soft = net.add_softmax(a)
    assert cat.get_output(0).shape == (4, 3, 4)
    data = torch.randn(2, 3, 4)
    torch.testing.assert_close(run(net, soft.get_output(0), a=data), torch.softmax(data, dim=0))


def test_shuffle_nhwc_flatten_with_dynamic_batch():
    net = new_network()
    x = net.add_input("x", trt.float32, (-1, 8, 3, 5))
    shuffle = net.add_shuffle(x)
    shuffle.first_transpose = (0, 2, 3, 1)
    shuffle.reshape_dims = (0, -1, 4)
    assert shuffle.get_output(0).shape == (-1, 30, 4)
    data = torch.randn(3, 8, 3, 5)
    got = run(net, shuffle.get_output(0), x=data)
    torch.testing.assert_close(got, data.permute(0, 2, 3, 1).reshape(3, -1, 4))


def test_shuffle_placeholder_that_moves_under_transpose_is_refused():
    net = new_network()
    x = net.add_input("x", trt.float32, (2, 8, 3, 5))
    shuffle = net.add_shuffle(x)
    shuffle.first_transpose = (1, 0, 2, 3)
    shuffle.reshape_dims = (0, -1)
    with pytest.raises(ValueError, match="ambiguous"):
        _ = shuffle.get_output(0).shape


def test_scale_channel_mode_and_max_pool():
    net = new_network()
    x = net.add_input("x", trt.float32, (1, 2, 5, 5))
    scale = net.add_scale(x, trt.ScaleMode.CHANNEL, trt.Weights(np.array([1.0, -1.0], np.float32)),
                          trt.Weights(np.array([2.0, 3.0], np.float32)), trt.Weights())
    pool = net.add_pooling_nd(scale.get_output(0), trt.PoolingType.MAX, (3, 3))
    pool.stride_nd, pool.padding_nd = (2, 2), (1, 1)
    data = torch.randn(1, 2, 5, 5)
    expected = data * torch.tensor([2.0, 3.0]).view(1, 2, 1, 1) + torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    got = run(net, pool.get_output(0), x=data)
    torch.testing.assert_close(got, F.max_pool2d(expected, 3, 2, 1))


def test_input_shape_is_checked_at_run_time():
    net = new_network()
    x = net.add_input("x", trt.float32, (-1, 3, 8, 8))
    act = net.add_activation(x, trt.ActivationType.RELU)
    with pytest.raises(ValueError, match="expects"):
        run(net, act.get_output(0), x=torch.zeros(1, 3, 8, 9))
