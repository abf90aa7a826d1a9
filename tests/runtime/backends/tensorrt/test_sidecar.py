"""Engine sidecar: schema, compatibility rules (portable engines included), and damaged engine files caught
before TensorRT, none of which needs TensorRT."""

from __future__ import annotations

import json

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt.sidecar import (DeviceInfo, EngineMismatchError, check_compatible, check_engine_file,
                                               build_command, read_engine_bytes, read_sidecar, sidecar_path,
                                               write_sidecar)
from tests.runtime.backends.tensorrt import fakes

PLAN = bytes(range(256)) * 40
H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0")


def info_for(**changes) -> dict:
    return fakes.info_for(PLAN, **changes)


@pytest.fixture()
def engine(tmp_path):
    path = tmp_path / "mnet.engine"
    path.write_bytes(PLAN)
    write_sidecar(path, info_for())
    return path


def write_raw(engine, info):
    sidecar_path(engine).write_text(json.dumps({"format": 1, **info}))


def test_sidecar_round_trip(engine):
    assert read_sidecar(engine)["engine_bytes"] == len(PLAN)


def test_missing_sidecar_says_how_to_rebuild(tmp_path):
    with pytest.raises(RetinaFaceError, match="retinaface-trt build"):
        read_sidecar(tmp_path / "other.engine")


def test_invalid_sidecar_json_is_an_error(engine):
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(RetinaFaceError, match="not a valid engine sidecar"):
        read_sidecar(engine)


@pytest.mark.parametrize("key, value, expected", [
    ("input_shape", "abc", "'input_shape' must be a list \\[N, 3, H, W\\]"),
    ("input_shape", [1, 3, 640], "'input_shape' must be"),
    ("engine_bytes", "10240", "'engine_bytes' must be a positive integer"),
    ("engine_bytes", True, "'engine_bytes' must be a positive integer"),
    ("precision", "int4", "'precision' must be \"fp32\", \"fp16\" or \"int8\""),
    ("compute_capability", 9.0, "'compute_capability' must be"),
    ("profile", {"min": [1, 3, 640, 640]}, "'profile' must be"),
    ("outputs", {"loc": "wide"}, "'outputs' must be"),
    ("engine_sha256", "not-hex", "'engine_sha256' must be a sha256"),
    ("version_compatible", "yes", "'version_compatible' must be true or false"),
    ("hardware_compatibility", "turing+", "'hardware_compatibility' must be none or ampere\\+ or same-cc"),
    ("postprocess", {"confidence_threshold": 0.02, "nms_threshold": 0.4, "top_k": 5000, "keep_top_k": 750},
     "'postprocess' must be"),
])
def test_a_mistyped_key_is_refused_by_the_schema(engine, key, value, expected):
    """Audit (issue 13): the reader accepted {"input_shape": "abc"}; now every key's type is checked."""
    write_raw(engine, info_for(**{key: value}))
    with pytest.raises(RetinaFaceError, match=f"not a valid engine sidecar: {expected}"):
        read_sidecar(engine)


def test_missing_and_unknown_keys_are_refused(engine):
    info = info_for()
    del info["gpu_name"]
    write_raw(engine, info)
    with pytest.raises(RetinaFaceError, match="missing key\\(s\\) gpu_name"):
        read_sidecar(engine)
    write_raw(engine, info_for(colour="red"))
    with pytest.raises(RetinaFaceError, match="unknown key\\(s\\) colour"):
        read_sidecar(engine)


def test_a_sidecar_path_that_is_a_directory_is_one_clear_line(tmp_path):
    (tmp_path / "m.engine").write_bytes(PLAN)
    (tmp_path / "m.engine.json").mkdir()
    with pytest.raises(RetinaFaceError, match=r"m.engine.json is a directory, not the engine's JSON sidecar"):
        read_sidecar(tmp_path / "m.engine")


def test_writing_a_sidecar_checks_it_too(tmp_path):
    with pytest.raises(RetinaFaceError, match="'engine_bytes' must be"):
        write_sidecar(tmp_path / "m.engine", info_for(engine_bytes=-1))
    assert not sidecar_path(tmp_path / "m.engine").exists()


# Compatibility -----------------------------------------------------------------------------------------
def test_matching_version_and_gpu_pass():
    check_compatible(info_for(), "m.engine", "10.16.1.11", DeviceInfo("NVIDIA H100 PCIe", "9.0"))


def test_other_tensorrt_version_is_reported_with_rebuild_command():
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.16\.1\.11 \(running 11\.4\.0\.106\).*"
                                                  r"--version-compatible.*retinaface-trt build WEIGHTS -o m.engine "
                                                  r"--precision fp16 --input-size 640x640 --max-batch 8"):
        check_compatible(info_for(), "m.engine", "11.4.0.106", H100)


def test_engine_built_on_another_gpu_is_reported():
    with pytest.raises(EngineMismatchError, match=r"compute capability 9\.0 \(running on NVIDIA A10, 8\.6\)"):
        check_compatible(info_for(), "m.engine", "10.16.1.11", DeviceInfo("NVIDIA A10", "8.6"))


@pytest.mark.parametrize("built, running", [("10.3.0", "10.16.1.11"), ("10.16.1.11", "11.4.0.106"),
                                            ("8.6.1", "8.6.2"), ("8.6.1", "10.3.0"), ("8.6.1", "10.16.1.11")])
def test_version_compatible_engine_runs_on_later_versions(built, running):
    """8 → 10 and 10 → 11 are the two supported cross-major combinations (NVIDIA's support matrix)."""
    check_compatible(info_for(tensorrt_version=built, version_compatible=True), "m.engine", running, H100)


@pytest.mark.parametrize("built, running", [("10.16.1.11", "10.3.0"), ("8.6.1", "11.4.0.106"),
                                            ("11.4.0.106", "10.16.1.11"), ("10.3.0", "8.6.1")])
def test_version_compatible_engine_is_still_refused_where_tensorrt_does_not_support_it(built, running):
    with pytest.raises(EngineMismatchError, match="a later one of the same major version"):
        check_compatible(info_for(tensorrt_version=built, version_compatible=True), "m.engine", running, H100)


def test_ampere_plus_engine_runs_on_other_ampere_or_newer_gpus():
    info = info_for(hardware_compatibility="ampere+")
    check_compatible(info, "m.engine", "10.16.1.11", DeviceInfo("NVIDIA A10", "8.6"))
    with pytest.raises(EngineMismatchError, match="an ampere\\+ engine runs on GPUs of compute capability 8.0"):
        check_compatible(info, "m.engine", "10.16.1.11", DeviceInfo("Tesla T4", "7.5"))


def test_rebuild_command_keeps_the_portability_flags():
    info = info_for(version_compatible=True, hardware_compatibility="ampere+", tensorrt_version="10.3.0",
                    profile={"min": [1, 3, 320, 320], "opt": [1, 3, 640, 640], "max": [4, 3, 1024, 1024]})
    with pytest.raises(EngineMismatchError, match="--min-size 320x320 --max-size 1024x1024 --max-batch 4 "
                                                  "--version-compatible --hardware-compatibility ampere\\+"):
        check_compatible(info, "m.engine", "8.6.1", H100)


# Engine file checks ------------------------------------------------------------------------------------
def test_intact_engine_bytes_are_returned(engine):
    assert read_engine_bytes(engine, read_sidecar(engine)) == PLAN


def test_truncated_engine_is_caught_before_deserializing(engine):
    engine.write_bytes(PLAN[:1000])
    with pytest.raises(RetinaFaceError, match="has 1000 bytes but its sidecar records 10240: the file is truncated"):
        check_engine_file(engine)


def test_corrupt_engine_of_the_right_size_is_caught(engine):
    engine.write_bytes(PLAN[:-1] + b"\x00")
    with pytest.raises(RetinaFaceError, match="does not match the sha256"):
        check_engine_file(engine)


def test_missing_engine_is_named_before_its_sidecar(tmp_path):
    """Issue 14: a missing engine used to be reported as its missing .json sidecar."""
    with pytest.raises(RetinaFaceError, match=r"engine file .*absent.engine does not exist"):
        check_engine_file(tmp_path / "absent.engine")


def test_an_engine_path_that_is_a_directory_is_one_clear_line(tmp_path):
    (tmp_path / "m.engine").mkdir()
    with pytest.raises(RetinaFaceError, match="is a directory, not an engine file"):
        check_engine_file(tmp_path / "m.engine")


INT8 = {"images": "calib", "count": 200, "method": "entropy", "keep_precision": ["fpn.*"], "resize": "stretch",
        "input_size": [640, 640], "route": "explicit", "cache": "c.json", "calibration": "0123456789abcdef"}


def test_an_int8_sidecar_records_its_calibration_and_rebuilds_with_it(engine):
    write_sidecar(engine, info_for(precision="int8", int8=INT8))
    command = build_command(read_sidecar(engine), engine)
    assert "--precision int8" in command and "--calibration-images calib --calibration-count 200" in command
    assert "--int8-route explicit" in command and "--keep-precision 'fpn.*'" in command
    assert "--calibration-cache c.json" in command


@pytest.mark.parametrize("change", [{"route": "ptq"}, {"count": 0}, {"calibration": "xyz"}, {"extra": 1}])
def test_a_wrong_int8_record_is_refused(engine, change):
    write_raw(engine, info_for(precision="int8", int8={**INT8, **change}))
    with pytest.raises(RetinaFaceError, match="'int8' must be"):
        read_sidecar(engine)
