"""Real TensorRT on an NVIDIA GPU: `build --onnx` of the exported MobileNet-0.25 against the stored outputs.

Skipped (with the reason) without ``import tensorrt`` or a CUDA device. Run on a GPU machine:

    python -m pytest -q -m tensorrt tests/runtime/backends/tensorrt/test_build_onnx_real.py
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import require_tensorrt_and_gpu

pytestmark = pytest.mark.tensorrt
torch, trt = require_tensorrt_and_gpu()

from wts_export.onnx_export import export_onnx  # noqa: E402
from runtime.backends.tensorrt.build import BuildOptions  # noqa: E402
from runtime.backends.tensorrt.engine import TensorRTBackend  # noqa: E402
from runtime.backends.tensorrt.build_onnx import build_engine_from_onnx  # noqa: E402
from runtime.backends.tensorrt.sidecar import read_sidecar  # noqa: E402


@pytest.fixture(scope="module")
def onnx_engine(mnet_pth, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_engine")
    model = export_onnx(mnet_pth, folder / "mnet_dyn.onnx", dynamic=True)
    options = BuildOptions(min_size=(160, 160), max_size=(1024, 1024), max_batch=2)
    return build_engine_from_onnx(model, folder / "mnet_onnx.engine", options)


def test_onnx_engine_reproduces_the_stored_outputs(onnx_engine, crowd_reference):
    batch = torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"]).cuda()
    with TensorRTBackend(onnx_engine) as backend:
        outputs = [t.cpu().numpy() for t in backend.infer(batch)]
    for name, got in zip(("loc", "conf", "landms"), outputs):
        np.testing.assert_allclose(got, crowd_reference[f"{name}_640"], rtol=0, atol=1e-3, err_msg=name)


def test_onnx_engine_sidecar_records_the_source(onnx_engine):
    info = read_sidecar(onnx_engine)
    assert (info["source"], info["backbone"], info["input_shape"]) == ("onnx", "mobilenet0.25", [-1, 3, -1, -1])


@pytest.mark.skipif(int(trt.__version__.split(".")[0]) >= 11, reason="TensorRT 11 has no weak typing: ONNX fp16 is refused")
def test_onnx_fp16_engine_builds_by_weak_typing_and_agrees(mnet_pth, tmp_path, crowd_reference):
    """Audit item 5: ONNX fp16 on 10.x through weak typing + BuilderFlag.FP16 (it used to be refused)."""
    model = export_onnx(mnet_pth, tmp_path / "mnet.onnx")
    engine = build_engine_from_onnx(model, tmp_path / "mnet16.engine", BuildOptions(precision="fp16"))
    batch = torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"]).cuda()
    with TensorRTBackend(engine) as backend:
        conf = backend.infer(batch)[1].cpu().numpy()
    assert read_sidecar(engine)["precision"] == "fp16" and read_sidecar(engine)["input_shape"][0] == 1
    np.testing.assert_allclose(conf, crowd_reference["conf_640"], rtol=0, atol=0.05)
