"""Parity in float32 on CPU: the executor (hand-built network) vs ONNX Runtime vs PyTorch.

MobileNet-0.25 with the real weights on the crowd photo, ResNet-50 with seeded random weights; at
640×640 with fixed-size models, at an odd size and at batch 2 with dynamic models. Every output within the
float32 bound of the network's arithmetic of every other path's (tests/tolerances.py: the three paths run other
kernels, whose summation order differs per instruction set); detections (score ≥ 0.5) the same faces, scores
within the softmax's share of that bound.
"""

from __future__ import annotations

import cv2
import pytest
import torch

from runtime.backends.onnxruntime import OnnxRuntimeBackend
from runtime.backends.executor import ExecutorBackend
from runtime.backends.pytorch import PyTorchBackend
from runtime.compare import compare_batch
from wts_export.onnx_export import export_onnx
from runtime.preprocess import to_network_input
from tests.helpers import NetworkRun, random_resnet50_state_dict
from tests.tolerances import retinaface_tolerance, score_tolerance


def _paths(weights, onnx_path):
    return [("pytorch", PyTorchBackend(weights)), ("executor", ExecutorBackend(weights)),
            ("onnxruntime", OnnxRuntimeBackend(onnx_path, threads=2))]


@pytest.fixture(scope="module")
def mnet_weights(mnet_pth):
    from wts_export.weights import load_weights

    return load_weights(mnet_pth)


@pytest.fixture(scope="module")
def r50_weights():
    return random_resnet50_state_dict(seed=7)[1]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("parity")


@pytest.fixture(scope="module")
def mnet_dynamic_paths(mnet_weights, onnx_dir):
    """One dynamic model and its paths, shared by the odd-size and batch-2 tests."""
    return _paths(mnet_weights, export_onnx(mnet_weights, onnx_dir / "mnet_dyn.onnx", dynamic=True))


@pytest.fixture(scope="module")
def r50_dynamic_paths(r50_weights, onnx_dir):
    return _paths(r50_weights, export_onnx(r50_weights, onnx_dir / "r50_dyn.onnx", dynamic=True))


def _crowd(shared_dir, width, height, flip=False):
    image = cv2.imread(str(shared_dir / "images" / "crowd_1024x624.jpg"))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image[:, ::-1].copy() if flip else image


def _random(batch, height, width, seed):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 60


def _check(reports, weights, batch):
    reference = NetworkRun(weights)
    bound = retinaface_tolerance(reference.network, reference(batch))
    for r in reports:
        assert r.max_abs() <= bound, (r.a, r.b, r.abs, bound)
        assert r.faces_a == r.faces_b == r.matched, (r.a, r.b, r.faces_a, r.faces_b, r.matched)
        assert r.worst_score <= score_tolerance(bound), (r.a, r.b, r.worst_score, bound)
    return reports


def test_mobilenet_640_fixed_model(mnet_weights, onnx_dir, crowd_reference):
    model = export_onnx(mnet_weights, onnx_dir / "mnet640.onnx")
    batch = torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"])
    reports = _check(compare_batch(_paths(mnet_weights, model), batch, "crowd@640"), mnet_weights, batch)
    assert reports[0].faces_a == 24      # RETINAFACE_FACTS.md: 24 faces ≥ 0.5 when stretched to 640×640


def test_mobilenet_odd_size_dynamic_model(mnet_weights, mnet_dynamic_paths, shared_dir):
    batch = to_network_input([_crowd(shared_dir, 517, 333)])
    reports = _check(compare_batch(mnet_dynamic_paths, batch, "crowd@517x333"), mnet_weights, batch)
    assert reports[0].faces_a > 10


def test_mobilenet_batch_2_dynamic_model(mnet_weights, mnet_dynamic_paths, shared_dir):
    batch = to_network_input([_crowd(shared_dir, 640, 640), _crowd(shared_dir, 640, 640, flip=True)])
    reports = _check(compare_batch(mnet_dynamic_paths, batch, "crowd@640 x2"), mnet_weights, batch)
    assert reports[0].faces_a > 40


def test_resnet50_640_fixed_model(r50_weights, onnx_dir):
    model = export_onnx(r50_weights, onnx_dir / "r50_640.onnx")
    batch = _random(1, 640, 640, seed=1)
    _check(compare_batch(_paths(r50_weights, model), batch, "r50@640"), r50_weights, batch)


def test_resnet50_odd_size_dynamic_model(r50_weights, r50_dynamic_paths):
    batch = _random(1, 97, 131, seed=2)
    _check(compare_batch(r50_dynamic_paths, batch, "r50@131x97"), r50_weights, batch)


def test_resnet50_batch_2_dynamic_model(r50_weights, r50_dynamic_paths):
    batch = _random(2, 128, 160, seed=3)
    _check(compare_batch(r50_dynamic_paths, batch, "r50@160x128 x2"), r50_weights, batch)
