"""Seeded random weights (wts_export.random_weights): deterministic, complete, and behaving like trained ones."""

import numpy as np
import pytest
import torch

from network.config import MOBILENET_0_25, RESNET_50
from wts_export.random_weights import (BATCHNORM_SCALE, FACE_FRACTION, RESIDUAL_SCALE, calibration_images,
                                       random_weights)


@pytest.fixture(scope="module", params=["mobilenet0.25", "resnet50"])
def made(request):
    return request.param, random_weights(request.param, seed=3)


def test_the_same_seed_gives_the_same_weights_and_another_seed_others():
    _, first = random_weights("mobilenet0.25", seed=5)
    _, again = random_weights(MOBILENET_0_25, seed=5)
    _, other = random_weights("mobilenet0.25", seed=6)
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["body.stage1.0.0.weight"], other["body.stage1.0.0.weight"])


def test_the_global_generator_is_left_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_weights("mobilenet0.25", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_every_checkpoint_name_is_there_as_float32_and_used_by_the_network(made):
    from network import populate_network
    from network.executor import trt

    name, (model, arrays) = made
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(arrays) == expected and all(a.dtype == np.float32 for a in arrays.values())
    store = populate_network(trt, trt.Builder(trt.Logger()).create_network(0), arrays)
    assert store.unused() == []


def test_batchnorm_statistics_are_those_of_the_activations(made):
    """After calibration each BatchNorm's output, on the calibration images, has the mean of its shift and the
    spread of its scale: the statistics describe the activations (plain random statistics are off by about 1).
    Not exactly: running_var is the unbiased variance, so each layer's input differs a little from the one
    the statistics were measured on, most where feature maps are small (up to 0.06 and 3% measured)."""
    _, (model, _) = made
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    seen = {}
    # A clone: the in-place activation after each BatchNorm overwrites its output.
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o.clone())) for n, m in norms.items()]
    with torch.no_grad():
        model(calibration_images(3))
    for hook in hooks:
        hook.remove()
    for name, module in norms.items():
        mean = seen[name].mean(dim=(0, 2, 3))
        std = seen[name].std(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(mean, module.bias.detach(), atol=0.1, rtol=0)
        torch.testing.assert_close(std, module.weight.detach().abs(), atol=0.01, rtol=0.05)


def test_scales_follow_the_recipe(made):
    name, (model, _) = made
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            low, high = RESIDUAL_SCALE if module_name.endswith(".bn3") else BATCHNORM_SCALE
            weight = module.weight.detach()
            assert low <= float(weight.min()) and float(weight.max()) <= high, module_name
    assert any(n.endswith(".bn3") for n, _ in model.named_modules()) == (name == "resnet50")


def test_detections_are_sparse_on_the_calibration_images(made):
    """FACE_FRACTION of the priors score above 0.5 (the face channels are the odd ones), most are background."""
    _, (model, _) = made
    with torch.no_grad():
        scores = model(calibration_images(3))[1][..., 1]
    above = float((scores > 0.5).float().mean())
    assert FACE_FRACTION / 2 <= above <= FACE_FRACTION * 2
    assert float((scores < 0.4).float().mean()) > 0.9    # not hovering around 0.5 as plain random heads do


def test_resnet50_activations_stay_in_range():
    model, _ = random_weights(RESNET_50, seed=0)
    seen = {}
    hooks = [getattr(model.body, n).register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o))
             for n in ("bn1", "layer1", "layer2", "layer3", "layer4")]
    with torch.no_grad():
        model(calibration_images(1))
    for hook in hooks:
        hook.remove()
    assert all(1.0 < float(t.abs().max()) < 100.0 for t in seen.values()), {n: float(t.abs().max()) for n, t in seen.items()}
