"""The OpenVINO backend against ONNX Runtime on the same export, and through detect, the SDK and the base checks.

Skipped with the reason where OpenVINO is not installed (``pip install '.[openvino]'``), failed instead under
``RETINAFACE_REQUIRE_OPENVINO=1`` (CI installs the extra and sets it).

Tolerance: both run the same float32 ONNX graph with different kernels (oneDNN's against ONNX Runtime's MLAS:
other summation orders, fused operations), so they differ by what two summation orders of this network can
(tests/tolerances.py: the longest convolution chain and accumulation, read from the network definition, times
float32's unit roundoff and the outputs' magnitude); scores by half of it (a two-class softmax). The issue asked
for 1e-4: the outputs are checked against that too, which holds with a margin (about 1e-5 measured).
"""

from __future__ import annotations

import base64
import json
import math
import os

import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from runtime.backends import create_backend
from tests.tolerances import retinaface_tolerance, score_tolerance

ISSUE_BOUND = 1e-4        # issue 23: "results equal ONNX Runtime's to 1e-4"


@pytest.fixture(scope="module")
def openvino():
    try:
        import openvino
    except ImportError:
        if os.environ.get("RETINAFACE_REQUIRE_OPENVINO") == "1":
            pytest.fail("openvino is not installed (RETINAFACE_REQUIRE_OPENVINO=1)")
        pytest.skip("openvino is not installed: pip install '.[openvino]'")
    return openvino


@pytest.fixture(scope="module")
def mnet_network(mnet_pth):
    """The hand-built network definition, for the float32 bound of its arithmetic (tests/tolerances.py)."""
    from tests.helpers import NetworkRun
    from wts_export.weights import load_weights

    return NetworkRun(load_weights(mnet_pth)).network


@pytest.fixture(scope="module")
def both(openvino, mnet_pth):
    ov, ort = (create_backend(name, weights=str(mnet_pth), device="cpu") for name in ("openvino", "onnxruntime"))
    yield ov, ort
    ov.close()
    ort.close()


def _assert_close(network, ours, theirs):
    bound = retinaface_tolerance(network, theirs)
    for name, a, b in zip(("loc", "conf", "landms"), ours, theirs):
        limit = min(score_tolerance(bound) if name == "conf" else bound, ISSUE_BOUND)
        assert a.shape == b.shape and a.dtype == torch.float32
        assert float((a - b).abs().max()) <= limit, (name, float((a - b).abs().max()), limit)


def test_outputs_equal_onnxruntime_s_on_the_reference_input(both, mnet_network, crowd_reference):
    ov, ort = both
    batch = torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"])
    assert ov.fixed_input_size is None and ov.cfg.name == "mobilenet0.25" and ov.name == "openvino"
    _assert_close(mnet_network, ov.infer(batch), ort.infer(batch))


def test_outputs_equal_onnxruntime_s_for_a_batch_of_another_size(both, mnet_network, crowd_reference):
    ov, ort = both
    image = torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"])[:, :, :480, :352]
    batch = torch.cat((image, image.flip(3))).contiguous()
    ours = ov.infer(batch)
    assert ours[0].shape == (2, 6930, 4)
    _assert_close(mnet_network, ours, ort.infer(batch))


def test_detect_gives_onnxruntime_s_faces(openvino, mnet_pth, shared_dir, tmp_path):
    from runtime.cli.main import main

    records = {}
    for name in ("openvino", "onnxruntime"):
        out = tmp_path / f"{name}.json"
        assert main(["detect", str(shared_dir / "images" / "crowd_1024x624.jpg"), "--weights", str(mnet_pth),
                     "--backend", name, "--device", "cpu", "--json", str(out), "-q"]) == 0
        records[name] = json.loads(out.read_text())[0]
    ours, theirs = records["openvino"]["faces"], records["onnxruntime"]["faces"]
    assert len(ours) == len(theirs) == 26                # RETINAFACE_FACTS.md: 26 faces ≥ 0.6 at original size
    # A box's centre moves by 0.1 · prior · Δloc and its side by 0.2 · prior · e^(0.2·loc) · Δloc (the decoding);
    # priors are at most 512 px and |loc| ≤ 5 here: with |Δloc| ≤ 1e-4, at most 1e-4 · 512 · (0.1 + 0.2 · e) px.
    pixels = ISSUE_BOUND * 512 * (0.1 + 0.2 * math.e)
    for a, b in zip(ours, theirs):
        assert abs(a["score"] - b["score"]) <= ISSUE_BOUND
        assert max(abs(a["box"][k] - b["box"][k]) for k in "xywh") <= 2 * pixels     # x and w: two corners


def test_the_sdk_runs_it(openvino, mnet_pth, shared_dir):
    from runtime import Engine

    data = base64.b64encode((shared_dir / "images" / "crowd_1024x624.jpg").read_bytes()).decode()
    with Engine(weights=str(mnet_pth), backend="openvino", device="cpu") as engine:
        assert engine.detector.backend.name == "openvino"
        assert len(json.loads(engine.infer(data))["faces"]) == 26


def test_the_base_class_checks_size_and_closing(openvino, mnet_pth, tmp_path):
    from wts_export.onnx_export import export_onnx

    backend = create_backend("openvino", engine=export_onnx(mnet_pth, tmp_path / "m.onnx", input_size=(320, 256)))
    assert backend.fixed_input_size == (320, 256)
    with pytest.raises(RetinaFaceError, match="built for 320x256 inputs, found 320x320; .*--dynamic"):
        backend.infer(torch.zeros(1, 3, 320, 320))
    assert len(backend.infer(torch.zeros(1, 3, 256, 320))) == 3
    backend.close()
    backend.close()
    with pytest.raises(RetinaFaceError, match="openvino backend was closed"):
        backend.infer(torch.zeros(1, 3, 256, 320))


def test_missing_openvino_names_the_extra(mnet_pth, monkeypatch):
    import builtins

    real = builtins.__import__

    def without_openvino(name, *args, **kwargs):
        if name == "openvino":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_openvino)
    with pytest.raises(RetinaFaceError, match=r"pip install '\.\[openvino\]' in the retinaface-trt checkout"):
        create_backend("openvino", weights=str(mnet_pth), device="cpu")
