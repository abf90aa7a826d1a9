"""The TensorRT ONNX-parser route without TensorRT: parser error reporting (with a small fake parser),
fitting the build options to the model's input shape, precision by version, the sidecar's input shape,
and `build --onnx` argument checks.
The real bindings check this route in tests/conformance (scenario "onnx")."""

from __future__ import annotations

import sys
import types

import pytest

from runtime.cli.main import main
from retinaface_trt.errors import RetinaFaceError
from runtime.backends.tensorrt.build import BuildOptions
from runtime.backends.tensorrt.build_onnx import options_for_model, parse_onnx
from runtime.backends.tensorrt.sidecar import DeviceInfo
from tests.runtime.backends.tensorrt.fakes import FakeCuda, builder_trt


class _Error:
    def __init__(self, node, desc):
        self._node, self._desc = node, desc

    def node(self):
        return self._node

    def desc(self):
        return self._desc


class _NamedError(_Error):          # 10.x / 11.x errors also name the node and its operator
    def node_name(self):
        return f"/fpn/Resize_{self._node}"

    def node_operator(self):
        return "Resize"


def _fake_trt(errors):
    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = len(errors)

        def parse(self, data):
            return not errors

        def get_error(self, index):
            return errors[index]

    return types.SimpleNamespace(OnnxParser=OnnxParser, ParserError=type(errors[0]) if errors else _Error)


def test_parser_errors_name_the_node_and_operator():
    trt = _fake_trt([_NamedError(7, "unsupported mode"), _NamedError(9, "bad scales")])
    with pytest.raises(RetinaFaceError) as info:
        parse_onnx(trt, object(), b"model", object())
    assert "node 7 '/fpn/Resize_7' (Resize): unsupported mode; node 9 '/fpn/Resize_9' (Resize): bad scales" \
        in str(info.value)


def test_parser_errors_without_node_names_give_the_index():
    with pytest.raises(RetinaFaceError, match=r"refused the model: node 3: no importer"):
        parse_onnx(_fake_trt([_Error(3, "no importer")]), object(), b"model", object())


def test_a_parsed_model_returns_the_parser():
    assert parse_onnx(_fake_trt([]), object(), b"model", object()).num_errors == 0


def test_fixed_batch_sets_the_profile_batches():
    options = options_for_model(BuildOptions(max_batch=8), [1, 3, 640, 640])
    assert options.profile()["max"] == (1, 3, 640, 640)


def test_dynamic_model_keeps_the_options():
    options = BuildOptions(min_size=(320, 320), max_size=(1024, 1024))
    assert options_for_model(options, [None, 3, None, None]) == options


def test_fixed_size_model_refuses_another_size():
    with pytest.raises(RetinaFaceError, match="--input-size 320x256"):
        options_for_model(BuildOptions(), [1, 3, 256, 320])


def test_build_needs_exactly_one_model(tmp_path, capsys):
    code = main(["build", "-o", str(tmp_path / "m.engine")])
    assert code == 1 and "exactly one model" in capsys.readouterr().err


def test_build_onnx_without_tensorrt_exits_1(monkeypatch, mnet_pth, tmp_path, capsys):
    from wts_export.onnx_export import export_onnx

    model = export_onnx(mnet_pth, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code = main(["build", "--onnx", str(model), "-o", str(tmp_path / "m.engine")])
    assert code == 1 and "TensorRT is not installed" in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists()


def _onnx_trt(version: str, input_shape=(1, 3, 640, 640)):
    """A builder fake whose ONNX "parser" adds an input of ``input_shape`` and one output to the network."""
    trt = builder_trt(version, FakeCuda())

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data):
            x = self.network.add_input("input", trt.float32, input_shape)
            out = self.network.add_activation(x, trt.ActivationType.RELU).get_output(0)
            out.name = "loc"
            self.network.mark_output(out)
            return True

    trt.OnnxParser = OnnxParser
    return trt


H100 = DeviceInfo("NVIDIA H100", "9.0")


def test_a_fixed_batch_onnx_engine_records_its_batch_not_minus_one():
    """Audit item 5: the sidecar of a fixed-batch ONNX engine used to record batch -1."""
    from runtime.backends.tensorrt.build_onnx import build_serialized_from_onnx

    options = options_for_model(BuildOptions(), [1, 3, 640, 640])
    _, built = build_serialized_from_onnx(_onnx_trt("10.16.1.11"), b"model", options, H100)
    assert built["input_shape"] == [1, 3, 640, 640] and built["outputs"] == {"loc": [1, 3, 640, 640]}


def test_onnx_fp16_on_10_builds_weakly_typed_with_the_fp16_flag():
    """Audit item 5: ONNX fp16 was refused on 10.x, where weak typing + BuilderFlag.FP16 works."""
    from runtime.backends.tensorrt.build_onnx import build_serialized_from_onnx

    trt = _onnx_trt("10.16.1.11")
    build_serialized_from_onnx(trt, b"model", BuildOptions(precision="fp16"), H100)
    assert ("create_network", 0) in trt.calls and ("set", "FP16") in trt.builds[0]["config"].calls


def test_onnx_fp16_on_11_is_refused_with_the_alternative():
    from runtime.backends.tensorrt.build_onnx import build_serialized_from_onnx

    with pytest.raises(RetinaFaceError, match="build FP16 from the weights"):
        build_serialized_from_onnx(_onnx_trt("11.4.0.106"), b"model", BuildOptions(precision="fp16"), H100)


def test_onnx_route_refuses_postprocessing():
    from retinaface_trt.thresholds import Thresholds
    from runtime.backends.tensorrt.build_onnx import build_serialized_from_onnx

    with pytest.raises(RetinaFaceError, match="hand-built network only"):
        build_serialized_from_onnx(_onnx_trt("10.16.1.11"), b"m", BuildOptions(postprocess=Thresholds().in_engine()),
                                   H100)
