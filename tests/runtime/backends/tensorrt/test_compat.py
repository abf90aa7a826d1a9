"""runtime.backends.tensorrt.compat against hand-written fakes of the three TensorRT lines (the same helpers
are checked against the real bindings of each version in tests/conformance)."""

from __future__ import annotations

import logging
import sys
import types

import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt import compat as trt_compat
from tests.runtime.backends.tensorrt.fakes import (TRT10, TRT11, TRT86, RecordingConfig, builder_trt, fake_trt,
                                                   weak_network)


def plan(trt, precision="fp32", onnx=False):
    return trt_compat.precision_plan(trt, precision, onnx=onnx)


@pytest.mark.parametrize("trt, flags", [(TRT86, 1 << 0), (TRT10, 1 << 1), (TRT11, 0)])
def test_network_flags(trt, flags):
    assert trt_compat.network_flags(trt, plan(trt)) == flags


@pytest.mark.parametrize("trt, calls, half", [(TRT86, [("set", "FP16")], False), (TRT10, [], True), (TRT11, [], True)])
def test_fp16_route_of_the_hand_built_network(trt, calls, half):
    config, fp16 = RecordingConfig(), plan(trt, "fp16")
    trt_compat.set_precision(trt, config, fp16, "fp16")
    assert config.calls == calls and fp16.half_graph == half


def test_fp32_clears_tf32():
    config = RecordingConfig()
    trt_compat.set_precision(TRT11, config, plan(TRT11), "fp32")
    assert config.calls == [("clear", "TF32")]


def test_a_weakly_typed_version_without_the_fp16_flag_fails_loudly():
    """Audit item 4: a missing BuilderFlag.FP16 used to be a silent no-op (an fp32 engine labelled fp16)."""
    trt = fake_trt("8.6.1", builder_flags=["INT8", "TF32"])
    with pytest.raises(RetinaFaceError, match="has no BuilderFlag.FP16"):
        trt_compat.set_precision(trt, RecordingConfig(), plan(trt, "fp16"), "fp16")


def test_fp16_is_decided_by_the_version_not_by_which_names_exist():
    """A 10.x without STRONGLY_TYPED is not silently taken for 8.6 (weak typing): it is an error."""
    trt = fake_trt("10.16.1.11", creation_flags=["EXPLICIT_BATCH"])
    assert plan(trt, "fp16").half_graph
    with pytest.raises(RetinaFaceError, match="lacks NetworkDefinitionCreationFlag.STRONGLY_TYPED"):
        trt_compat.network_flags(trt, plan(trt, "fp16"))


@pytest.mark.parametrize("version", ["12.0.0", "9.1.0", "8.5.3"])
def test_an_unknown_version_is_refused(version):
    with pytest.raises(RetinaFaceError, match=f"TensorRT {version} is not a version this project builds for"):
        plan(types.SimpleNamespace(__version__=version))


def test_onnx_fp16_on_10_is_weak_typing_with_the_fp16_flag():
    fp16 = plan(TRT10, "fp16", onnx=True)
    config = RecordingConfig()
    trt_compat.set_precision(TRT10, config, fp16, "fp16")
    assert (fp16.strongly_typed, trt_compat.network_flags(TRT10, fp16), config.calls) == (False, 0, [("set", "FP16")])


def test_onnx_fp16_on_11_is_refused():
    with pytest.raises(RetinaFaceError, match="weak typing and BuilderFlag.FP16 were removed in 11.0"):
        plan(TRT11, "fp16", onnx=True)


def test_unknown_precision_is_an_error():
    with pytest.raises(RetinaFaceError, match="unknown precision 'int4'; expected one of: fp32, fp16, int8"):
        plan(TRT11, "int4")


def test_major_version():
    assert [trt_compat.major_version(t) for t in (TRT86, TRT10, TRT11)] == [8, 10, 11]


def test_one_logger_per_process():
    """Audit item 5: TensorRT keeps one logger pointer, so every Builder and Runtime gets the same object."""
    trt = fake_trt("11.4.0.106")
    assert trt_compat.tensorrt_logger(trt) is trt_compat.tensorrt_logger(trt)


def test_logger_bridge_maps_severity_to_logging_level(caplog):
    bridge = trt_compat.make_logger(TRT11, logging.getLogger("test.trt"))
    with caplog.at_level(logging.DEBUG, "test.trt"):
        bridge.log(TRT11.ILogger.Severity.ERROR, "engine failed")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, "engine failed")]


# Timing caches -----------------------------------------------------------------------------------------
def test_timing_cache_is_attached_with_mismatches_refused():
    config = RecordingConfig()
    trt_compat.attach_timing_cache(config, b"cached timings", where="cache.file")
    assert config.calls == [("set_timing_cache", b"cached timings", False)]


@pytest.mark.parametrize("data", [b"from another GPU", b"none", b"raise"])
def test_a_refused_timing_cache_is_discarded_with_a_note(data, caplog):
    """Audit item 2: refused (set_timing_cache False), None, or raising: replaced by an empty cache, said."""
    config = RecordingConfig(accept_cache=lambda cached: cached == b"")
    with caplog.at_level(logging.WARNING, "retinaface_trt.tensorrt"):
        cache = trt_compat.attach_timing_cache(config, data, where="timing cache T.cache")
    assert cache.data == b"" and config.calls[-1] == ("set_timing_cache", b"", False)
    assert "timing cache T.cache was not accepted" in caplog.text


def test_no_timing_cache_at_all_is_an_error():
    class NoCache(RecordingConfig):
        def create_timing_cache(self, data):
            return None

    with pytest.raises(RetinaFaceError, match="could not create an empty timing cache"):
        trt_compat.attach_timing_cache(NoCache(), b"")


# Portable engines --------------------------------------------------------------------------------------
def test_version_compatible_sets_the_flag_and_keeps_the_lean_runtime():
    config = RecordingConfig()
    trt_compat.set_portability(TRT10, config, True, "none", "9.0")
    assert config.calls == [("set", "VERSION_COMPATIBLE"), ("clear", "EXCLUDE_LEAN_RUNTIME")]
    assert config.attributes["hardware_compatibility_level"].name == "NONE"


def test_not_portable_clears_the_flag_and_sets_level_none():
    config = RecordingConfig()
    trt_compat.set_portability(TRT86, config, False, "none", "8.6")
    assert config.calls == [("clear", "VERSION_COMPATIBLE")]
    assert config.attributes["hardware_compatibility_level"].name == "NONE"


@pytest.mark.parametrize("level, member", [("ampere+", "AMPERE_PLUS"), ("same-cc", "SAME_COMPUTE_CAPABILITY")])
def test_hardware_compatibility_levels(level, member):
    assert trt_compat.hardware_level(TRT11, level, "8.9").name == member


def test_ampere_plus_needs_an_ampere_build_gpu():
    with pytest.raises(RetinaFaceError, match=r"built on an Ampere or newer GPU .* this one has 7.5"):
        trt_compat.hardware_level(TRT11, "ampere+", "7.5")


def test_same_cc_needs_tensorrt_10_10():
    with pytest.raises(RetinaFaceError, match="no same-compute-capability level"):
        trt_compat.hardware_level(fake_trt("10.3.0", same_cc=False), "same-cc", "9.0")


# Install hints -----------------------------------------------------------------------------------------
def test_missing_tensorrt_names_the_install_command_and_what_works_without_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(RetinaFaceError) as bare:
        trt_compat.import_tensorrt()
    with pytest.raises(RetinaFaceError) as hinted:
        trt_compat.import_tensorrt("or use `--backend torch`")
    assert "pip install '.[tensorrt]' in the retinaface-trt checkout" in str(bare.value) and "--backend" not in str(bare.value)
    assert str(hinted.value).endswith("; or use `--backend torch`")


def test_progress_without_monitor_is_one_log_line():
    lines = []
    trt_compat.attach_progress(TRT86, RecordingConfig(), report=lambda *a: lines.append(a[0] % a[1:]))
    assert len(lines) == 1 and "8.6.1" in lines[0]


def test_progress_monitor_reports_phases():
    config, lines = types.SimpleNamespace(), []
    trt_compat.attach_progress(TRT11, config, report=lambda *a: lines.append(a[0] % a[1:]))
    config.progress_monitor.phase_start("Building", None, 10)
    keep_going = [config.progress_monitor.step_complete("Building", s) for s in range(10)]
    assert all(keep_going) and lines[0] == "build phase Building (10 steps)" and len(lines) == 11


# INT8 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trt, calls, typed, flags", [
    (TRT86, [("clear", "TF32"), ("set", "INT8")], False, 1 << 0),     # 8.6: "INT8 flag required for any quantization"
    (TRT10, [("clear", "TF32")], True, 1 << 1),                         # strongly typed, no precision flag
    (TRT11, [("clear", "TF32")], True, 0)])
def test_explicit_int8_route_per_version(trt, calls, typed, flags):
    config, int8 = RecordingConfig(), trt_compat.precision_plan(trt, "int8")
    trt_compat.set_precision(trt, config, int8, "int8")
    assert (config.calls, int8.qdq_graph, int8.strongly_typed, trt_compat.network_flags(trt, int8)) == \
        (calls, True, typed, flags)


@pytest.mark.parametrize("trt", [TRT86, TRT10])
def test_implicit_int8_route_is_a_weakly_typed_network_with_the_calibrator(trt):
    config, int8 = RecordingConfig(), trt_compat.precision_plan(trt, "int8", int8_route="implicit")
    trt_compat.set_precision(trt, config, int8, "int8")
    assert config.calls == [("clear", "TF32"), ("set", "INT8"), ("set", "OBEY_PRECISION_CONSTRAINTS")]
    assert (int8.calibrator, int8.qdq_graph, int8.strongly_typed) == (True, False, False)


def test_implicit_int8_is_refused_on_11_with_the_explicit_route_as_the_fix():
    with pytest.raises(RetinaFaceError, match="implicit quantization was removed in 11.0.*--int8-route explicit"):
        trt_compat.precision_plan(TRT11, "int8", int8_route="implicit")


def test_int8_from_an_onnx_model_is_refused():
    with pytest.raises(RetinaFaceError, match="drop --onnx"):
        trt_compat.precision_plan(TRT10, "int8", onnx=True)


def test_kept_layers_and_their_batchnorm_and_activation_are_constrained_to_float32():
    network = weak_network([("body.stage1.0.0", "CONVOLUTION", "input"), ("body.stage1.0.1", "SCALE",
                            "body.stage1.0.0_output"), ("body.stage1.0.2", "ACTIVATION", "body.stage1.0.1_output"),
                            ("body.stage1.1.3", "CONVOLUTION", "body.stage1.0.2_output"),
                            ("body.stage1.1.4", "SCALE", "body.stage1.1.3_output"),
                            ("fpn.merge1.0", "CONVOLUTION", "x"), ("fpn.merge1.1", "SCALE", "fpn.merge1.0_output")])
    trt = builder_trt("10.16.1.11", None)
    kept = trt_compat.keep_layers_float(trt, network, ("fpn.merge1.*",))
    assert kept == ["body.stage1.0.0", "body.stage1.0.1", "body.stage1.0.2", "fpn.merge1.0", "fpn.merge1.1"]
    layers = {layer.name: layer for layer in network.layers}
    assert layers["fpn.merge1.1"].precision == trt.float32 and layers["body.stage1.0.2"].output_types == {0: trt.float32}
    assert layers["body.stage1.1.3"].precision is None and layers["body.stage1.1.4"].output_types == {}


def test_a_keep_pattern_of_no_layer_is_refused_in_the_implicit_route():
    with pytest.raises(RetinaFaceError, match="--keep-precision 'nothing.\\*' matches no layer"):
        trt_compat.keep_layers_float(builder_trt("10.16.1.11", None), weak_network([("fpn.merge1.0", "CONVOLUTION",
                                                                                   "x")]), ("nothing.*",))


def test_the_calibrator_gets_a_calibration_profile_of_one_image():
    trt, config = builder_trt("10.16.1.11", None), RecordingConfig()
    from tests.runtime.backends.tensorrt.fakes import FakeBuilder

    builder = FakeBuilder(types.SimpleNamespace(calls=[], cuda=types.SimpleNamespace(current=0)), None, None)
    trt_compat.attach_calibrator(trt, builder, config, "the calibrator", (1, 3, 480, 640))
    assert config.attributes["int8_calibrator"] == "the calibrator"
    assert config.calls == [("set_calibration_profile", ("input", (1, 3, 480, 640), (1, 3, 480, 640), (1, 3, 480, 640)))]


def test_only_float_layers_are_constrained_never_shape_layers_or_integer_gathers():
    """Issue 25 point 6: keep_layers_float set FLOAT on every matching layer, shape layers and INT32 gathers
    included (TensorRT logs an error for each; OBEY_PRECISION_CONSTRAINTS may fail the build)."""
    network = weak_network([("fpn.up1.size", "SHAPE", "fpn.output2_output", ("INT64",)),
                            ("fpn.up1.size.int32", "CAST", "fpn.up1.size_output", ("INT32",)),
                            ("fpn.up1", "RESIZE", ("fpn.output1_output", "fpn.up1.size.int32_output")),
                            ("fpn.merge1.0", "CONVOLUTION", "fpn.up1_output"),
                            ("fpn.pick", "GATHER", ("fpn.up1.size.int32_output", "fpn.up1.size.int32_output"),
                             ("INT32",))])
    trt = builder_trt("10.16.1.11", None)
    kept = trt_compat.keep_layers_float(trt, network, ("fpn.*",))
    layers = {layer.name: layer for layer in network.layers}
    for name in ("fpn.up1.size", "fpn.up1.size.int32", "fpn.pick"):
        assert (layers[name].precision, layers[name].output_types) == (None, {}), name
    assert (layers["fpn.up1"].precision, layers["fpn.up1"].output_types) == (None, {0: trt.float32})
    assert (layers["fpn.merge1.0"].precision, layers["fpn.merge1.0"].output_types) == (trt.float32, {0: trt.float32})
    assert kept == ["fpn.up1", "fpn.merge1.0"]
