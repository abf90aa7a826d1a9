"""The PyTorch RetinaFace: checkpoint layout, outputs of the original implementation, ResNet-50 shapes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from network.config import MOBILENET_0_25, RESNET_50
from retinaface_trt.errors import RetinaFaceError
from wts_export.checkpoint import load_state_dict
from wts_export.model import RetinaFace, build_model

TOLERANCE = 1e-4   # max abs difference to the stored outputs, float32 on CPU


def expected_priors(height: int, width: int, steps=(8, 16, 32), anchors: int = 2) -> int:
    return sum(math.ceil(height / s) * math.ceil(width / s) * anchors for s in steps)


@pytest.fixture(scope="module")
def mnet_state(mnet_pth):
    return load_state_dict(mnet_pth)


@pytest.fixture(scope="module")
def mnet_outputs(mnet_state, crowd_reference):
    model = build_model(mnet_state)
    with torch.no_grad():
        loc, conf, landms = model(torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"]))
    return {"loc_640": loc, "conf_640": conf, "landms_640": landms}


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return RetinaFace(RESNET_50).eval()


def test_checkpoint_loads_strictly(mnet_state):
    result = RetinaFace(MOBILENET_0_25).load_state_dict(mnet_state, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])


def test_state_dict_names_shapes_and_order_match_checkpoint(mnet_state):
    ours = [(k, tuple(v.shape)) for k, v in RetinaFace(MOBILENET_0_25).state_dict().items()]
    assert ours == [(k, tuple(v.shape)) for k, v in mnet_state.items()]


@pytest.mark.parametrize("name", ["loc_640", "conf_640", "landms_640"])
def test_outputs_match_original_implementation(mnet_outputs, crowd_reference, name):
    reference = crowd_reference[name]
    assert mnet_outputs[name].shape == reference.shape
    assert np.abs(mnet_outputs[name].numpy() - reference).max() <= TOLERANCE


@pytest.mark.parametrize("key, shape", [
    ("body.conv1.weight", (64, 3, 7, 7)),
    ("body.layer1.0.downsample.0.weight", (256, 64, 1, 1)),
    ("body.layer2.0.conv2.weight", (128, 128, 3, 3)),
    ("body.layer4.2.conv3.weight", (2048, 512, 1, 1)),
    ("fpn.output1.0.weight", (256, 512, 1, 1)),
    ("fpn.output3.0.weight", (256, 2048, 1, 1)),
    ("ssh1.conv7x7_3.0.weight", (64, 64, 3, 3)),
    ("ClassHead.0.conv1x1.weight", (4, 256, 1, 1)),
    ("LandmarkHead.2.conv1x1.weight", (20, 256, 1, 1)),
])
def test_resnet_state_dict_shapes(resnet, key, shape):
    assert tuple(resnet.state_dict()[key].shape) == shape


def test_resnet_trunk_is_torchvision_layout(resnet):
    blocks = {}
    for key in resnet.state_dict():
        found = re.match(r"body\.layer(\d)\.(\d+)\.", key)
        if found:
            blocks.setdefault(int(found[1]), set()).add(int(found[2]))
    downsampled = {k.rsplit(".downsample", 1)[0] for k in resnet.state_dict() if ".downsample." in k}
    assert {layer: len(b) for layer, b in blocks.items()} == {1: 3, 2: 4, 3: 6, 4: 3}
    assert downsampled == {f"body.layer{i}.0" for i in range(1, 5)}
    assert not any(k.startswith("body.fc") for k in resnet.state_dict())


def test_resnet_runs_at_odd_size(resnet):
    with torch.no_grad():
        loc, conf, landms = resnet(torch.randn(1, 3, 200, 328))
    priors = expected_priors(200, 328)
    assert (loc.shape, conf.shape, landms.shape) == ((1, priors, 4), (1, priors, 2), (1, priors, 10))
    assert torch.allclose(conf.sum(-1), torch.ones(1, priors))


def test_mobilenet_runs_at_odd_size_with_batch(mnet_state):
    with torch.no_grad():
        loc, _, _ = build_model(mnet_state)(torch.randn(2, 3, 97, 131))
    assert loc.shape == (2, expected_priors(97, 131), 4)


def test_build_model_recognises_resnet(resnet):
    assert build_model(resnet.state_dict()).cfg is RESNET_50


def test_build_model_rejects_missing_weight(mnet_state):
    broken = {k: v for k, v in mnet_state.items() if k != "fpn.merge1.0.weight"}
    with pytest.raises(RetinaFaceError, match=r"1 missing \(fpn\.merge1\.0\.weight\)"):
        build_model(broken)


def test_build_model_rejects_wrong_shape(mnet_state):
    broken = dict(mnet_state, **{"ClassHead.0.conv1x1.bias": torch.zeros(6)})
    with pytest.raises(RetinaFaceError, match=r"ClassHead\.0\.conv1x1\.bias \(6,\) \(expected \(4,\)\)"):
        build_model(broken)


def test_checkpoint_without_batchnorm_counters_loads(mnet_state, mnet_outputs, crowd_reference, tmp_path):
    """Checkpoints of PyTorch < 0.4.1 have no num_batches_tracked; they are not weights (unused in eval)."""
    from wts_export.weights import load_weights

    without = {k: v for k, v in mnet_state.items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        loc = build_model(without)(torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"]))[0]
    assert torch.equal(loc, mnet_outputs["loc_640"])
    torch.save(without, tmp_path / "old.pth")
    assert len(load_weights(tmp_path / "old.pth")) == 253


def test_build_model_checks_the_values(mnet_state):
    broken = dict(mnet_state, **{"LandmarkHead.0.conv1x1.bias": torch.full((20,), float("nan"))})
    with pytest.raises(RetinaFaceError, match=r"'LandmarkHead\.0\.conv1x1\.bias' has 20 value\(s\) that are not finite"):
        build_model(broken)


@pytest.mark.parametrize("where", ["wts_export", "network", "config"])
def test_a_backbone_outside_the_registry_fails_loudly_everywhere(where):
    """A third configuration name must not silently become ResNet-50 (wts_export.model had a ternary)."""
    import dataclasses

    from network.config import BACKBONES, MOBILENET_0_25

    third = dataclasses.replace(MOBILENET_0_25, name="efficientnet")
    with pytest.raises(RetinaFaceError, match="efficientnet"):
        if where == "wts_export":
            from wts_export.model import RetinaFace

            RetinaFace(third)
        elif where == "network":
            from network.backbones import backbone_builder

            backbone_builder(third.name)
        else:
            from network.config import get_config

            get_config(third.name)
    assert "efficientnet" not in BACKBONES
