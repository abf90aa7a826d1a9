"""Real TensorRT on an NVIDIA GPU: INT8 engines of MobileNet-0.25, explicit (Q/DQ, every version) and implicit
(TensorRT's entropy calibrator, 8.6 and 10.x), checked against the emulated INT8 network of the executor.

Skipped (with the reason) without ``import tensorrt`` or a CUDA device; nothing here has run on real TensorRT yet
(docs/int8.md, "What has been verified"). On a GPU machine with TensorRT:

    python -m pytest -q -m tensorrt tests/runtime/backends/tensorrt/test_int8_real.py

Calibration uses the crops of ``crop_folder`` (20 images, 96×128), stretched to the 320×320 engines.
"""

from __future__ import annotations

import dataclasses

import pytest

from retinaface_trt.errors import RetinaFaceError
from tests.helpers import require_tensorrt_and_gpu

pytestmark = pytest.mark.tensorrt
torch, trt = require_tensorrt_and_gpu()

from runtime.backends.executor import ExecutorBackend  # noqa: E402
from runtime.backends.tensorrt.build import BuildOptions, build_engine_file  # noqa: E402
from runtime.backends.tensorrt.compat import version_facts  # noqa: E402
from runtime.backends.tensorrt.engine import TensorRTBackend  # noqa: E402
from runtime.backends.tensorrt.sidecar import read_sidecar  # noqa: E402
from runtime.calibration import Int8Settings  # noqa: E402
from runtime.compare import detections, match_faces  # noqa: E402

SIZE = (320, 320)


@pytest.fixture(scope="session")
def int8(crop_folder, tmp_path_factory):
    return Int8Settings(crop_folder, count=20, cache=tmp_path_factory.mktemp("int8") / "explicit.json",
                        input_size=SIZE)


@pytest.fixture(scope="session")
def explicit_engine(mnet_pth, int8, tmp_path_factory):
    options = BuildOptions(precision="int8", input_size=SIZE, max_batch=2, int8=int8)
    return build_engine_file(mnet_pth, tmp_path_factory.mktemp("engines") / "mnet-int8.engine", options)


@pytest.fixture(scope="session")
def crowd_batch(crowd_image):
    from runtime.preprocess import resize_image, to_network_input

    resized, _ = resize_image(crowd_image, "stretch", SIZE)
    return to_network_input([resized], "cuda")


def faces(backend, batch):
    return detections(backend.infer(batch), backend.cfg, SIZE[0], SIZE[1], 0.5)[0]


def test_explicit_int8_engine_builds_with_its_sidecar(explicit_engine):
    info = read_sidecar(explicit_engine)
    assert info["precision"] == "int8" and info["int8"]["route"] == "explicit"


def test_explicit_int8_engine_finds_the_faces_of_the_emulated_network(mnet_pth, explicit_engine, int8, crowd_batch):
    """The emulation claims to be what the engine computes: the same faces, at nearly the same places."""
    with TensorRTBackend(explicit_engine, device="cuda") as engine:
        got = faces(engine, crowd_batch)
    emulated = ExecutorBackend(mnet_pth, device="cuda", precision="int8", int8=int8)
    expected = faces(emulated, crowd_batch)
    emulated.close()
    matched, worst_score, _ = match_faces(got.cpu(), expected.cpu(), 0.8)
    assert len(expected) >= 10 and matched >= 0.95 * len(expected) and worst_score <= 0.05


def test_the_engine_layers_are_int8(explicit_engine):
    """`inspect --layers` precisions: convolutions run in INT8 (their Q/DQ fused), the kept ones do not."""
    from runtime.cli.inspect import layer_rows

    with TensorRTBackend(explicit_engine, device="cuda") as engine:
        rows = layer_rows(engine.layer_information())
    int8 = [name for name, _, precision, _ in rows if "int8" in precision]
    assert len(int8) >= 20, rows
    assert not any(name.startswith(("ClassHead", "BboxHead", "LandmarkHead")) for name in int8)


def test_a_second_explicit_build_skips_calibration(mnet_pth, int8, explicit_engine, tmp_path, monkeypatch):
    """``explicit_engine`` wrote the session's calibration cache; a second build reads it."""
    from runtime import calibration as cal

    assert int8.cache.exists()
    monkeypatch.setattr(cal, "calibrate", lambda *a, **k: pytest.fail("calibrated twice"))
    options = BuildOptions(precision="int8", input_size=SIZE, max_batch=1, int8=int8)
    engine_path = build_engine_file(mnet_pth, tmp_path / "again.engine", options)
    assert read_sidecar(engine_path)["int8"]["route"] == "explicit"


def test_implicit_int8_engine_with_tensorrts_calibrator(mnet_pth, int8, crowd_batch, tmp_path):
    implicit = dataclasses.replace(int8, route="implicit", cache=tmp_path / "trt.json")
    options = BuildOptions(precision="int8", input_size=SIZE, max_batch=1, int8=implicit)
    if not version_facts(trt).calibrator:
        with pytest.raises(RetinaFaceError, match="--int8-route explicit"):
            build_engine_file(mnet_pth, tmp_path / "implicit.engine", options)
        return
    engine_path = build_engine_file(mnet_pth, tmp_path / "implicit.engine", options)
    assert implicit.cache.exists() and read_sidecar(engine_path)["int8"]["route"] == "implicit"
    with TensorRTBackend(engine_path, device="cuda") as engine:
        assert len(faces(engine, crowd_batch)) >= 10
