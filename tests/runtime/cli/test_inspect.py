"""`retinaface-trt inspect`: the sidecar and file checks without TensorRT, and the layer table's formatting."""

from __future__ import annotations

import json
import sys

import pytest

from runtime.backends.tensorrt.sidecar import write_sidecar
from runtime.cli.inspect import format_layers, layer_rows
from runtime.cli.main import main
from tests.runtime.backends.tensorrt.fakes import info_for

PLAN = b"serialized plan" * 10


@pytest.fixture()
def engine(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)     # none of this needs TensorRT
    path = tmp_path / "m.engine"
    path.write_bytes(PLAN)
    write_sidecar(path, info_for(PLAN))
    return path


def test_inspect_prints_the_checked_sidecar_without_tensorrt(engine, capsys):
    code = main(["inspect", str(engine)])
    out, err = capsys.readouterr()
    assert code == 0 and err == "" and '"backbone": "mobilenet0.25"' in out
    assert f"engine file: {len(PLAN)} bytes, sha256 as recorded" in out


def test_inspect_of_an_engine_that_does_not_match_its_sidecar_exits_1(engine, capsys):
    """Issue 13: inspect without TensorRT printed the sidecar of a corrupt engine and exited 0."""
    engine.write_bytes(PLAN[:-1] + b"!")
    assert main(["inspect", str(engine)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "does not match the sha256" in err and err.count("\n") == 1


def test_inspect_of_a_truncated_engine_exits_1(engine, capsys):
    engine.write_bytes(PLAN[:10])
    assert main(["inspect", str(engine)]) == 1 and "truncated" in capsys.readouterr().err


def test_inspect_of_a_missing_engine_says_the_engine_is_missing(tmp_path, capsys):
    """Issue 14: it used to say the .json sidecar was missing."""
    assert main(["inspect", str(tmp_path / "absent.engine")]) == 1
    err = capsys.readouterr().err
    assert "engine file" in err and "absent.engine does not exist" in err and ".json" not in err


@pytest.mark.parametrize("name, said", [("m.wts", "is a weights file, not a TensorRT engine"),
                                        ("m.pth", "is a weights file, not a TensorRT engine"),
                                        ("m.onnx", "is an ONNX model, not a TensorRT engine")])
def test_inspect_of_weights_or_an_onnx_model_says_what_they_are(tmp_path, capsys, name, said):
    (tmp_path / name).write_bytes(b"weights")
    assert main(["inspect", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert said in err and "retinaface-trt build" in err and "sidecar" not in err and len(err.splitlines()) == 1


def test_inspect_when_the_sidecar_is_a_directory_is_one_line(engine, capsys):
    engine.with_name(engine.name + ".json").unlink()
    engine.with_name(engine.name + ".json").mkdir()
    assert main(["inspect", str(engine)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err


def test_inspect_of_a_mistyped_sidecar_exits_1(engine, capsys):
    engine.with_name(engine.name + ".json").write_text(json.dumps({**info_for(PLAN), "format": 1,
                                                                   "input_shape": "abc"}))
    assert main(["inspect", str(engine)]) == 1 and "'input_shape' must be" in capsys.readouterr().err


def test_inspect_layers_without_tensorrt_says_how_to_install(engine, capsys):
    assert main(["inspect", str(engine), "--layers"]) == 1
    assert "TensorRT is not installed" in capsys.readouterr().err


DETAILED_10 = {"Layers": [
    {"Name": "body.stage1.0.0 + body.stage1.0.2", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "input", "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "a", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16", "TacticValue": "0x1234"},
    {"Name": "postprocess.nms", "LayerType": "NMS", "Outputs": [{"Name": "b", "Format/Datatype": "Int32"}],
     "TacticValue": "0x0000000000000000"}], "Bindings": ["input", "dets", "count"]}
DETAILED_11 = {"Layers": [{"Name": "conv", "LayerType": "CaskConvolution",
                           "Outputs": [{"Name": "x", "DataType": "Half", "Format": "Channel major"}],
                           "TacticName": "sm90_tactic"}], "I/O Tensors": []}


def test_layer_rows_of_the_10_x_inspector_format():
    assert layer_rows(json.dumps(DETAILED_10)) == [
        ("body.stage1.0.0 + body.stage1.0.2", "CaskConvolution", "fp16", "sm80_xmma_fprop_implicit_gemm_f16f16"),
        ("postprocess.nms", "NMS", "int32", "0x0000000000000000")]


def test_layer_rows_of_the_11_x_inspector_format():
    assert layer_rows(json.dumps(DETAILED_11)) == [("conv", "CaskConvolution", "fp16", "sm90_tactic")]


def test_format_layers_aligns_columns_and_notes_names_only_engines():
    table = format_layers(json.dumps(DETAILED_10)).splitlines()
    assert table[0].split() == ["layer", "type", "precision", "tactic"] and len(table) == 3
    assert table[1].index("CaskConvolution") == table[2].index("NMS")
    names_only = format_layers(json.dumps({"Layers": ["conv1", "conv2"]}))
    assert "names only" in names_only and "conv2" in names_only
