"""Engine sidecar: round trip, compatibility messages, and damaged engine files caught before TensorRT."""

from __future__ import annotations

import hashlib

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt.sidecar import DeviceInfo, check_compatible, read_engine_bytes, read_sidecar, write_sidecar

PLAN = bytes(range(256)) * 40
H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture()
def engine(tmp_path):
    path = tmp_path / "mnet.engine"
    path.write_bytes(PLAN)
    write_sidecar(path, {"tensorrt_version": "10.16.1.11", "gpu_name": H100.name, "compute_capability": "9.0",
                         "precision": "fp16", "engine_sha256": hashlib.sha256(PLAN).hexdigest(),
                         "engine_bytes": len(PLAN)})
    return path


def test_sidecar_round_trip(engine):
    assert read_sidecar(engine)["engine_bytes"] == len(PLAN)


def test_missing_sidecar_says_how_to_rebuild(tmp_path):
    with pytest.raises(RetinaFaceError, match="retinaface-trt build"):
        read_sidecar(tmp_path / "other.engine")


def test_invalid_sidecar_json_is_an_error(engine):
    engine.with_name(engine.name + ".json").write_text("{not json")
    with pytest.raises(RetinaFaceError, match="not a valid engine sidecar"):
        read_sidecar(engine)


def test_matching_version_and_gpu_pass(engine):
    check_compatible(read_sidecar(engine), engine, "10.16.1.11", DeviceInfo("NVIDIA H100 PCIe", "9.0"))


def test_other_tensorrt_version_is_reported_with_rebuild_command(engine):
    with pytest.raises(RetinaFaceError, match=r"TensorRT 10\.16\.1\.11 \(running 11\.4\.0\.106\).*"
                                              r"retinaface-trt build WEIGHTS -o .* --precision fp16"):
        check_compatible(read_sidecar(engine), engine, "11.4.0.106", H100)


def test_engine_built_on_another_gpu_is_reported(engine):
    with pytest.raises(RetinaFaceError, match=r"compute capability 9\.0 \(running on NVIDIA A10, 8\.6\)"):
        check_compatible(read_sidecar(engine), engine, "10.16.1.11", DeviceInfo("NVIDIA A10", "8.6"))


def test_intact_engine_bytes_are_returned(engine):
    assert read_engine_bytes(engine, read_sidecar(engine)) == PLAN


def test_truncated_engine_is_caught_before_deserializing(engine):
    engine.write_bytes(PLAN[:1000])
    with pytest.raises(RetinaFaceError, match="has 1000 bytes but its sidecar records 10240: the file is truncated"):
        read_engine_bytes(engine, read_sidecar(engine))


def test_corrupt_engine_of_the_right_size_is_caught(engine):
    engine.write_bytes(PLAN[:-1] + b"\x00")
    with pytest.raises(RetinaFaceError, match="does not match the sha256"):
        read_engine_bytes(engine, read_sidecar(engine))
