"""Building an engine (runtime.backends.tensorrt.build) with a fake Builder around the executor's network API:
the device used, the sidecar, timing caches, portable and post-processing options, writing the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from retinaface_trt.thresholds import Thresholds
from retinaface_trt import fileio
from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt import build as trt_build
from runtime.backends.tensorrt import sidecar
from runtime.backends.tensorrt.build import BuildOptions, build_engine_file, prepare_output, timing_cache_file
from runtime.backends.tensorrt.sidecar import DeviceInfo, read_sidecar
from tests.runtime.backends.tensorrt.fakes import FakeCuda, builder_trt

H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 0)
A100 = DeviceInfo("NVIDIA A100-SXM4-80GB", "8.0", 1)


@pytest.fixture()
def cuda(monkeypatch):
    """Two fake GPUs; the build code's device functions go through them."""
    fake = FakeCuda(devices=(H100, A100))
    monkeypatch.setattr(sidecar, "current_device", fake.device_info)
    monkeypatch.setattr(sidecar, "device_scope", lambda index: fake.scope(torch.device("cuda", index)))
    return fake


def build(tmp_path, cuda, options=BuildOptions(), device_index=1, version="10.16.1.11", **kwargs):
    trt = builder_trt(version, cuda, **kwargs)
    path = build_engine_file(pytest.mnet, tmp_path / "m.engine", options, trt=trt, device_index=device_index)
    return path, trt


@pytest.fixture(autouse=True)
def _weights(mnet_pth):
    pytest.mnet = mnet_pth


def test_the_engine_is_built_on_the_chosen_device(tmp_path, cuda):
    """Audit item 1: the build never selected the device, so an engine for device N was built on device 0."""
    _, trt = build(tmp_path, cuda, device_index=1)
    builders = [c for c in trt.calls if c[0] == "Builder"]
    assert [b["device"] for b in trt.builds] == [1] and builders[0][1] == 1 and cuda.current == 0


def test_the_sidecar_names_the_device_really_used(tmp_path, cuda):
    path, _ = build(tmp_path, cuda, device_index=1)
    info = read_sidecar(path)
    assert (info["gpu_name"], info["compute_capability"], info["device_index"]) == (A100.name, "8.0", 1)


def test_sidecar_shapes_come_from_the_network(tmp_path, cuda):
    path, _ = build(tmp_path, cuda, BuildOptions(input_size=(320, 256), max_batch=2))
    info = read_sidecar(path)
    assert info["input_shape"] == [-1, 3, 256, 320] and info["outputs"]["loc"] == [-1, 3360, 4]
    assert info["profile"]["max"] == [2, 3, 256, 320] and info["source"] == "weights"


def test_timing_cache_is_named_by_version_and_gpu_and_reused(tmp_path, cuda):
    """Audit item 2: one timing.cache per folder mixed GPUs and versions."""
    folder = tmp_path / "caches"
    folder.mkdir()
    build(tmp_path, cuda, BuildOptions(timing_cache_dir=folder), device_index=1)
    expected = folder / "timing-trt10.16.1.11-nvidia-a100-sxm4-80gb-sm8.0.cache"
    assert [p.name for p in folder.iterdir()] == [expected.name] and expected.read_bytes() == b"timing cache"
    (tmp_path / "m.engine").unlink()
    _, trt = build(tmp_path, cuda, BuildOptions(timing_cache_dir=folder), device_index=1)
    calls = trt.builds[0]["config"].calls
    assert ("set_timing_cache", b"timing cache", False) in calls
    assert timing_cache_file(folder, "10.16.1.11", H100) != expected


def test_a_refused_timing_cache_is_replaced_and_said(tmp_path, cuda, caplog):
    folder = tmp_path / "caches"
    folder.mkdir()
    timing_cache_file(folder, "10.16.1.11", A100).write_bytes(b"from elsewhere")
    _, trt = build(tmp_path, cuda, BuildOptions(timing_cache_dir=folder), accept_cache=lambda data: data == b"")
    assert [c for c in trt.builds[0]["config"].calls if c[0] == "set_timing_cache"] == \
        [("set_timing_cache", b"from elsewhere", False), ("set_timing_cache", b"", False)]
    assert "was not accepted by TensorRT" in caplog.text


def test_portable_options_are_set_and_recorded(tmp_path, cuda):
    options = BuildOptions(version_compatible=True, hardware_compatibility="ampere+")
    path, trt = build(tmp_path, cuda, options)
    config = trt.builds[0]["config"]
    assert ("set", "VERSION_COMPATIBLE") in config.calls
    assert config.attributes["hardware_compatibility_level"].name == "AMPERE_PLUS"
    info = read_sidecar(path)
    assert (info["version_compatible"], info["hardware_compatibility"]) == (True, "ampere+")


def test_every_setting_whose_default_matters_is_set(tmp_path, cuda):
    _, trt = build(tmp_path, cuda, BuildOptions(workspace_mib=512))
    config = trt.builds[0]["config"]
    assert ("clear", "TF32") in config.calls and ("clear", "VERSION_COMPATIBLE") in config.calls
    assert ("set_memory_pool_limit", "WORKSPACE", 512 << 20) in config.calls
    assert config.attributes["hardware_compatibility_level"].name == "NONE"
    assert config.attributes["profiling_verbosity"].name == "DETAILED"


def test_postprocessing_engine_has_dets_and_count_and_records_the_thresholds(tmp_path, cuda):
    settings = Thresholds(confidence_threshold=0.5, keep_top_k=100).in_engine()
    path, _ = build(tmp_path, cuda, BuildOptions(postprocess=settings))
    info = read_sidecar(path)
    assert info["outputs"] == {"dets": [-1, 100, 15], "count": [-1]}
    assert info["postprocess"] == settings.as_dict()


def test_postprocessing_needs_a_fixed_size():
    with pytest.raises(RetinaFaceError, match="--with-postprocess needs a fixed input size"):
        BuildOptions(min_size=(320, 320), max_size=(640, 640), postprocess=Thresholds().in_engine()).validate()


def test_fp16_on_10_builds_a_half_graph(tmp_path, cuda):
    _, trt = build(tmp_path, cuda, BuildOptions(precision="fp16"))
    network = trt.builds[0]["network"]
    types = {network.get_layer(i).get_output(0).dtype.name for i in range(network.num_layers)}
    assert ("create_network", 2) in trt.calls and "HALF" in types
    assert ("set", "FP16") not in trt.builds[0]["config"].calls


def test_a_write_error_is_one_line_naming_the_path_and_leaves_nothing(tmp_path, cuda, monkeypatch):
    def refuse(path, data, force=True):     # what atomic_write raises for an OSError
        raise fileio._write_error(Path(path), PermissionError(13, "Permission denied"))

    monkeypatch.setattr(trt_build, "write_bytes_atomic", refuse)
    with pytest.raises(RetinaFaceError, match=r"cannot write .*m.engine: Permission denied"):
        build(tmp_path, cuda)
    assert list(tmp_path.iterdir()) == []


def test_an_engine_whose_sidecar_cannot_be_written_is_removed(tmp_path, cuda, monkeypatch):
    def refuse(path, text, force=True):
        raise fileio._write_error(Path(path), OSError(28, "No space left on device"))

    monkeypatch.setattr(sidecar, "write_text_atomic", refuse)
    with pytest.raises(RetinaFaceError, match=r"cannot write .*m.engine.json: No space left on device"):
        build(tmp_path, cuda)
    assert list(tmp_path.iterdir()) == []


def test_output_is_checked_before_any_work(tmp_path):
    (tmp_path / "old.engine").write_bytes(b"x")
    (tmp_path / "dir.engine.json").mkdir()
    with pytest.raises(RetinaFaceError, match="already exists; pass --force"):
        prepare_output(tmp_path / "old.engine", force=False)
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(RetinaFaceError, match="plain is a file, not a folder"):
        prepare_output(tmp_path / "plain" / "m.engine", force=False)
    assert prepare_output(tmp_path / "new" / "m.engine", force=False) and not (tmp_path / "new").exists()
    with pytest.raises(RetinaFaceError, match="dir.engine.json: it is a directory"):
        prepare_output(tmp_path / "dir.engine", force=True)


def test_sidecar_is_valid_json_with_the_schema(tmp_path, cuda):
    path, _ = build(tmp_path, cuda)
    assert json.loads((tmp_path / "m.engine.json").read_text())["format"] == 1 and path.read_bytes() == b"plan " * 100


# Post-processing in weakly typed networks (issue 25 point 3) ---------------------------------------------------------
def _float_outputs(layer, float_types):
    return [i for i in range(layer.num_outputs) if layer.get_output(i).dtype in float_types]


def test_weak_fp16_keeps_every_float_layer_of_the_postprocessing_in_float32(tmp_path, cuda):
    """8.6's FP16 flag let TensorRT run decode, the compaction key K - k (not exact in fp16 above 2048) and the
    boxes in fp16. Every layer with a float output gets float32 outputs; precision only where every input is
    float too; integer layers (NMS, index gathers, shape) nothing; the network before them nothing."""
    options = BuildOptions(precision="fp16", input_size=(320, 256), postprocess=Thresholds(keep_top_k=200).in_engine())
    _, trt = build(tmp_path, cuda, options, version="8.6.1")
    network, config = trt.builds[0]["network"], trt.builds[0]["config"]
    floats = (trt.float32, trt.float16)
    assert ("set", "FP16") in config.calls and ("set", "OBEY_PRECISION_CONSTRAINTS") in config.calls
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    post = [layer for layer in layers if layer.name.startswith("postprocess.")]
    assert len(post) > 50 and set(network.precisions) | set(network.output_types) <= {layer.name for layer in post}
    for layer in post:
        outputs = _float_outputs(layer, floats)
        all_float = all(layer.get_input(i) is None or layer.get_input(i).dtype in floats
                        for i in range(layer.num_inputs))
        assert network.output_types.get(layer.name, {}) == {i: trt.float32 for i in outputs}, layer.name
        assert network.precisions.get(layer.name) == (trt.float32 if outputs and all_float else None), layer.name
    assert network.precisions["postprocess.kept.key"] == trt.float32
    assert "postprocess.kept.where" not in network.output_types and "postprocess.nms" not in network.output_types


@pytest.mark.parametrize("version, precision", [("10.16.1.11", "fp16"), ("8.6.1", "fp32")])
def test_postprocessing_is_not_constrained_where_nothing_runs_below_float32(tmp_path, cuda, version, precision):
    """Strongly typed (10.x fp16: the graph is typed) or without a reduced-precision flag (fp32)."""
    options = BuildOptions(precision=precision, input_size=(320, 256),
                           postprocess=Thresholds(keep_top_k=200).in_engine())
    _, trt = build(tmp_path, cuda, options, version=version)
    network, config = trt.builds[0]["network"], trt.builds[0]["config"]
    assert network.precisions == {} and network.output_types == {}
    assert ("set", "OBEY_PRECISION_CONSTRAINTS") not in config.calls


# INT8 ---------------------------------------------------------------------------------------------------------------
@pytest.fixture()
def int8(crop_folder, tmp_path, monkeypatch):
    """INT8 settings over the crops; calibration runs on the CPU here (on the build's GPU otherwise)."""
    from runtime.calibration import Int8Settings

    monkeypatch.setattr(trt_build, "calibration_device", lambda index: "cpu")
    return Int8Settings(crop_folder, count=16, cache=tmp_path / "calibration.json", keep=("fpn.merge*",),
                        input_size=(128, 96))


@pytest.mark.parametrize("version", ["10.16.1.11", "11.4.0.106"])
def test_explicit_int8_builds_a_qdq_network_and_records_its_calibration(tmp_path, cuda, int8, version):
    from network.executor.enums import LayerType

    options = BuildOptions(precision="int8", input_size=(128, 96), int8=int8)
    path, trt = build(tmp_path, cuda, options, version=version)
    network, config = trt.builds[0]["network"], trt.builds[0]["config"]
    kinds = [network.get_layer(i).type for i in range(network.num_layers)]
    assert kinds.count(LayerType.QUANTIZE) > 40 and ("set", "INT8") not in config.calls
    assert ("clear", "TF32") in config.calls and (("create_network", 2) in trt.calls) == version.startswith("10.")
    info = read_sidecar(path)
    assert info["precision"] == "int8" and info["int8"]["route"] == "explicit"
    assert info["int8"]["keep_precision"] == ["fpn.merge*"] and len(info["int8"]["calibration"]) == 16
    assert int8.cache.exists() and "--calibration-images" in sidecar.build_command(info, path)


def test_a_second_int8_build_reads_the_calibration_cache(tmp_path, cuda, int8, monkeypatch):
    from runtime import calibration as cal

    options = BuildOptions(precision="int8", input_size=(128, 96), int8=int8)
    first, _ = build(tmp_path, cuda, options)
    digest = read_sidecar(first)["int8"]["calibration"]
    first.unlink()
    monkeypatch.setattr(cal, "calibrate", lambda *a, **k: pytest.fail("calibrated twice"))
    second, _ = build(tmp_path, cuda, options)
    assert read_sidecar(second)["int8"]["calibration"] == digest


def test_implicit_int8_on_11_is_refused_before_calibrating(tmp_path, cuda, int8, monkeypatch):
    import dataclasses

    from runtime import calibration as cal

    monkeypatch.setattr(cal, "network_inputs", lambda *a: pytest.fail("calibrated for nothing"))
    options = BuildOptions(precision="int8", int8=dataclasses.replace(int8, route="implicit"))
    with pytest.raises(RetinaFaceError, match="no INT8 calibrator .*--int8-route explicit"):
        build(tmp_path, cuda, options, version="11.4.0.106")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("changes,message", [
    (dict(precision="int8"), "--precision int8 needs calibration images"),
    (dict(precision="fp16", int8="settings"), "apply to --precision int8 only"),
])
def test_int8_options_are_checked_before_any_work(changes, message):
    with pytest.raises(RetinaFaceError, match=message):
        BuildOptions(**changes).validate()


def test_implicit_int8_needs_one_input_size(int8):
    import dataclasses

    options = BuildOptions(precision="int8", int8=dataclasses.replace(int8, route="implicit", resize="original"))
    with pytest.raises(RetinaFaceError, match="calibrates at one input size"):
        options.validate()


def test_implicit_int8_with_postprocessing_is_refused_in_one_line(int8):
    """Issue 25 point 4: TensorRT's calibrator would run the data-dependent NMS (NVIDIA/TensorRT#4071)."""
    import dataclasses

    options = BuildOptions(precision="int8", input_size=(320, 256), postprocess=Thresholds(keep_top_k=200).in_engine(),
                           int8=dataclasses.replace(int8, route="implicit", resize="stretch"))
    with pytest.raises(RetinaFaceError, match="^--with-postprocess .*--int8-route implicit.*use --int8-route explicit"):
        options.validate()
