"""network.quantize: the calibration maths against slow references, and the INT8 network definition (run by the
executor) against an independent fake-quantized PyTorch model."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from network import populate_network
from network.config import MOBILENET_0_25
from network.executor import Program, trt
from network.executor.enums import LayerType
from network.quantize import (BINS, DEFAULT_KEEP, LEVELS, ActivationObserver, Histogram, QuantizationPlan,
                              entropy_amax, fold_batch_norm, percentile_amax, weight_scales)
from retinaface_trt.errors import RetinaFaceError
from tests.helpers import random_resnet50_state_dict
from wts_export.checkpoint import load_state_dict
from wts_export.model import build_model


# Histogram ------------------------------------------------------------------------------------------------------
def test_histogram_of_growing_batches_equals_the_histogram_of_all_data():
    """Merging pairs of bins when the range doubles gives exactly the histogram made at the final width."""
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(5000).astype(np.float32) * s for s in (0.01, 1.0, 0.5, 37.0)]
    histogram = Histogram()
    for batch in batches:
        histogram.add(torch.from_numpy(batch))
    values = np.abs(np.concatenate(batches)).astype(np.float64)
    expected, _ = np.histogram(values, bins=BINS, range=(0.0, BINS * histogram.width))
    np.testing.assert_array_equal(histogram.counts, expected)
    assert histogram.amax == float(values.max()) and math.log2(histogram.width).is_integer()
    assert values.max() < BINS * histogram.width <= 2 * values.max()    # the data fill half to all of the bins


def test_histogram_counts_zeros_seen_before_any_other_value():
    histogram = Histogram()
    histogram.add(torch.zeros(10))
    histogram.add(torch.tensor([0.0, 3.0]))
    assert histogram.counts[0] == 11 and histogram.counts.sum() == 12


def test_a_non_finite_activation_is_an_error():
    with pytest.raises(RetinaFaceError, match="not finite"):
        Histogram().add(torch.tensor([1.0, float("nan")]))


# Entropy and percentile ------------------------------------------------------------------------------------------
def slow_divergence(counts, i):
    """The KL divergence of the slides (NVIDIA GTC 2017, "8-bit Inference with TensorRT"), bin by bin (on the
    counts as given: entropy_amax takes the exact zeros out of bin 0 before)."""
    p = [float(c) for c in counts[:i]]
    p[-1] += float(sum(counts[i:]))
    q = [0.0] * i
    for level in range(LEVELS):
        start, stop = level * i // LEVELS, (level + 1) * i // LEVELS
        filled = [b for b in range(start, stop) if counts[b] > 0]
        for b in filled:
            q[b] = float(sum(counts[start:stop])) / len(filled)
    total_p, total_q = sum(p), sum(q)
    if total_q == 0:
        return math.inf
    divergence = 0.0
    for pb, qb in zip(p, q):
        if pb > 0:
            if qb == 0:
                return math.inf
            divergence += pb / total_p * math.log((pb / total_p) / (qb / total_q))
    return divergence


def _histogram(values):
    histogram = Histogram()
    histogram.add(torch.from_numpy(np.asarray(values, np.float32)))
    return histogram


@pytest.mark.parametrize("i", [128, 129, 300, 1000, 1500, 2047, 2048])
def test_divergence_equals_the_slow_reference(i):
    from network.quantize import _divergence

    rng = np.random.default_rng(i)
    counts = _histogram(np.abs(rng.laplace(size=20000))).counts.astype(np.float64)
    beyond = float(counts[i:].sum())
    assert _divergence(counts, i, beyond) == pytest.approx(slow_divergence(counts, i), rel=1e-9, abs=1e-12)


def test_entropy_clips_the_long_tail_and_keeps_the_bulk():
    values = np.abs(np.random.default_rng(1).laplace(size=200000))
    amax = entropy_amax(_histogram(values))
    assert np.percentile(values, 99.9) < amax < values.max()


def test_the_zeros_of_a_relu_do_not_pull_the_threshold_into_the_bulk():
    values = np.maximum(np.random.default_rng(2).standard_normal(200000), 0.0)      # half of them exactly 0
    histogram = _histogram(values)
    assert histogram.zeros == int((values == 0).sum()) and entropy_amax(histogram) > np.percentile(values, 99)
    assert entropy_amax(histogram) == entropy_amax(_histogram(values[values > 0]))


def test_entropy_threshold_is_the_best_candidate_plus_half_a_bin():
    from network.quantize import _divergence

    histogram = _histogram(np.abs(np.random.default_rng(2).standard_normal(30000)))
    counts = histogram.counts.astype(np.float64)
    best = min(range(LEVELS, BINS + 1), key=lambda i: _divergence(counts, i, float(counts[i:].sum())))
    assert entropy_amax(histogram) == (best + 0.5) * histogram.width


def test_percentile_is_within_one_bin_of_numpy():
    values = np.abs(np.random.default_rng(3).standard_normal(200000)).astype(np.float32)
    histogram = _histogram(values)
    amax = percentile_amax(histogram, 99.99)
    assert abs(amax - np.percentile(values, 99.99)) <= histogram.width


def test_all_zero_tensors_get_amax_zero():
    histogram = _histogram(np.zeros(100))
    assert entropy_amax(histogram) == percentile_amax(histogram) == 0.0


# Weights ----------------------------------------------------------------------------------------------------------
def test_weight_scales_are_per_output_channel_amax_over_127():
    kernel = np.zeros((3, 2, 3, 3), np.float32)
    kernel[0, 1, 2, 2], kernel[1, 0, 0, 0] = -2.54, 1.27
    np.testing.assert_allclose(weight_scales(kernel), [0.02, 0.01, 1 / 127], rtol=1e-6)


def test_folding_equals_convolution_then_batchnorm():
    rng = np.random.default_rng(4)
    kernel, bias = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    scale, shift = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
    folded, folded_bias = fold_batch_norm(kernel, bias, scale, shift)
    x = torch.from_numpy(rng.standard_normal((1, 3, 8, 8)))
    expected = F.conv2d(x, torch.from_numpy(kernel), torch.from_numpy(bias)) * torch.from_numpy(scale)[:, None, None] \
        + torch.from_numpy(shift)[:, None, None]
    torch.testing.assert_close(F.conv2d(x, torch.from_numpy(folded), torch.from_numpy(folded_bias)), expected)


# The INT8 network ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnet_state_dict(mnet_pth):
    return load_state_dict(mnet_pth)


@pytest.fixture(scope="module")
def mnet_arrays(mnet_state_dict):
    return {k: v.numpy() for k, v in mnet_state_dict.items()}


def _network(weights, quantization=None, shape=(-1, 3, -1, -1)):
    network = trt.Builder(trt.Logger()).create_network(0)
    populate_network(trt, network, weights, input_shape=shape, quantization=quantization)
    return network


@pytest.fixture(scope="module")
def mnet_points(mnet_arrays):
    observer = ActivationObserver()
    _network(mnet_arrays, observer)
    return observer.points


def _plan(points, keep=(), seed=0):
    """Made-up but plausible activation ranges: 2..6 per tensor (points reading one tensor share it, as in a
    calibration)."""
    rng = np.random.default_rng(seed)
    by_tensor = {}
    return QuantizationPlan({p: by_tensor.setdefault(id(t), float(rng.uniform(2.0, 6.0))) for p, t in points.items()},
                            keep)


def fake_quantize(x, scale):
    """TensorRT's quantize then dequantize, in PyTorch (torch.round rounds half to even)."""
    return torch.clamp(torch.round(x / scale), -128, 127) * scale


def reference_int8_model(state_dict, plan):
    """MobileNet-0.25 RetinaFace in PyTorch, quantized independently of network.quantize: for every convolution
    of a Sequential that the plan quantizes, the BatchNorm after it is folded in (float64), its weights are
    fake-quantized per output channel and its input per tensor by a forward pre-hook."""
    model = copy.deepcopy(build_model(state_dict)).eval()
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for index, (child_name, conv) in enumerate(children):
            path = f"{name}.{child_name}"
            if isinstance(conv, nn.Conv2d) and not plan.kept(path):
                _quantize_conv(module, children, index, conv, plan.amax[path])
    return model


def _quantize_conv(sequential, children, index, conv, amax):
    bn_name, bn = children[index + 1]
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    weight = (conv.weight.double() * scale[:, None, None, None]).float()
    bias = (bn.bias.double() - bn.running_mean.double() * scale).float()
    w_scale = torch.from_numpy(np.float32(weight.abs().flatten(1).amax(1).numpy() / 127))
    conv.weight.data = fake_quantize(weight, w_scale[:, None, None, None])
    conv.bias = nn.Parameter(bias)
    setattr(sequential, bn_name, nn.Identity())
    x_scale = float(np.float32(amax / 127))
    conv.register_forward_pre_hook(lambda module, inputs: (fake_quantize(inputs[0], x_scale),))


def test_int8_network_equals_an_independent_fake_quantized_model(mnet_state_dict, mnet_arrays, mnet_points):
    plan = _plan(mnet_points)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(5)) * 60
    got = Program(_network(mnet_arrays, plan), fold_batchnorm=True)({"input": x})
    with torch.inference_mode():
        expected = reference_int8_model(mnet_state_dict, plan)(x)
        float_out = build_model(mnet_state_dict)(x)
    for name, e, f in zip(("loc", "conf", "landms"), expected, float_out):
        differs = (got[name] - e).abs()
        # The two differ only where float32 summation order moves a value across a rounding boundary.
        assert float((differs > 1e-3).float().mean()) < 0.01, name
        assert float(differs.mean()) < 0.05 * float((f - e).abs().mean()), name


def test_reference_mode_and_folded_mode_agree_on_the_int8_network(mnet_arrays, mnet_points):
    network, x = _network(mnet_arrays, _plan(mnet_points)), torch.randn(1, 3, 64, 64) * 50
    a, b = Program(network)({"input": x}), Program(network, fold_batchnorm=True)({"input": x})
    assert float((a["conf"] - b["conf"]).abs().max()) < 1e-3


def test_kept_points_are_the_float_network_and_quantized_ones_have_qdq(mnet_arrays, mnet_points):
    network = _network(mnet_arrays, _plan(mnet_points, keep=("body.stage2.*",)))
    layers = {layer.name: layer for layer in network._layers}
    assert layers["body.stage2.3.1"].type == LayerType.SCALE                  # kept: conv → BatchNorm scale
    assert "body.stage2.3.0.input_quantize" not in layers
    assert layers["body.stage3.0.0.input_quantize"].type == LayerType.QUANTIZE
    assert "body.stage3.0.1" not in layers                                     # its BatchNorm is folded
    conv = layers["body.stage3.0.0"]
    assert conv.num_inputs == 2 and conv.get_input(1) is layers["body.stage3.0.0.weight_dequantize"].get_output(0)
    assert all(not any(layer.name.startswith(p.rstrip("*")) and layer.type == LayerType.QUANTIZE
                       for layer in network._layers) for p in ("ClassHead", "BboxHead", "LandmarkHead"))


def test_the_default_keep_covers_the_first_convolutions_and_the_heads(mnet_points):
    plan = QuantizationPlan({})
    kept = [p for p in mnet_points if plan.kept(p)]
    assert kept == ["body.stage1.0.0", "body.stage1.1.0"] + [f"{h}.{i}.conv1x1" for h in
                                                             ("BboxHead", "ClassHead", "LandmarkHead") for i in range(3)]
    assert DEFAULT_KEEP[0] == "body.stage1.0.0"


def test_convolutions_reading_one_tensor_share_one_qdq_pair(mnet_arrays, mnet_points):
    network = _network(mnet_arrays, _plan(mnet_points))
    quantizers = [layer for layer in network._layers if layer.type == LayerType.QUANTIZE]
    inputs = [id(q.get_input(0)) for q in quantizers]
    assert len(inputs) == len(set(inputs))
    # ssh1.conv3X3 and ssh1.conv5X5_1 read fpn's output1: one pair, named after the first
    names = {layer.name for layer in quantizers}
    assert "ssh1.conv3X3.0.input_quantize" in names and "ssh1.conv5X5_1.0.input_quantize" not in names


def test_observer_builds_the_float_network(mnet_arrays, mnet_points):
    observed, plain = _network(mnet_arrays, ActivationObserver()), _network(mnet_arrays)
    assert [layer.name for layer in observed._layers] == [layer.name for layer in plain._layers]
    assert len(mnet_points) == 56 and all(not p.endswith(".add") for p in mnet_points)


def test_a_keep_pattern_matching_nothing_is_an_error(mnet_arrays, mnet_points):
    with pytest.raises(RetinaFaceError, match="--keep-precision 'body.stage9.\\*' matches no layer"):
        _network(mnet_arrays, _plan(mnet_points, keep=("body.stage9.*",)))


def test_a_plan_without_a_point_asks_for_a_new_calibration(mnet_arrays, mnet_points):
    plan = QuantizationPlan({p: 1.0 for p in mnet_points if p != "fpn.merge1.0"})
    with pytest.raises(RetinaFaceError, match="no statistics for .*calibrate again"):
        _network(mnet_arrays, plan)


def test_an_int8_network_is_not_built_in_half():
    with pytest.raises(RetinaFaceError, match="without half=True"):
        populate_network(trt, trt.Builder(trt.Logger()).create_network(0), {}, MOBILENET_0_25, half=True,
                         quantization=QuantizationPlan({}))


def test_resnet50_shortcuts_are_quantized_before_the_residual_add():
    _, weights = random_resnet50_state_dict()
    observer = ActivationObserver()
    _network(weights, observer)
    assert "body.layer1.0.add" in observer.points and "body.layer4.2.add" in observer.points
    network = _network(weights, _plan(observer.points))
    layers = {layer.name: layer for layer in network._layers}
    producers = {id(t): layer for layer in network._layers for t in layer._outputs}
    # a projection shortcut gets its own pair; an identity shortcut shares the pair of conv1, which reads it too
    assert layers["body.layer2.0.add"].get_input(1) is layers["body.layer2.0.add.input_dequantize"].get_output(0)
    assert producers[id(layers["body.layer2.1.add"].get_input(1))] is layers["body.layer2.1.conv1.input_dequantize"]
    out = Program(network, fold_batchnorm=True)({"input": torch.randn(1, 3, 64, 64)})
    assert torch.isfinite(out["loc"]).all()


def test_a_negated_pattern_quantizes_a_point_kept_by_default(mnet_arrays, mnet_points):
    plan = _plan(mnet_points, keep=("!body.stage1.1.0", "fpn.*"))
    assert not plan.kept("body.stage1.1.0") and plan.kept("body.stage1.0.0") and plan.kept("fpn.merge1.0")
    names = {layer.name for layer in _network(mnet_arrays, plan)._layers}
    assert "body.stage1.1.0.input_quantize" in names and "fpn.merge1.0.input_quantize" not in names
    with pytest.raises(RetinaFaceError, match="'!body.stage9.0' matches no layer"):
        _network(mnet_arrays, _plan(mnet_points, keep=("!body.stage9.0",)))
