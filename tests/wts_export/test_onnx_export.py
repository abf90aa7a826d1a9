"""export-onnx: the graph (names, opset, dynamic axes, the FPN resize sized from the lateral tensor),
onnx.checker, atomic writes, and the exported real checkpoint against the original outputs in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runtime.cli.main import main
from retinaface_trt.errors import RetinaFaceError
from wts_export.onnx_export import export_onnx, model_backbone, read_model_facts

REFERENCE_ATOL = 1e-4      # against the original implementation's stored outputs: the README's figure


@pytest.fixture(scope="module")
def mnet_network(mnet_pth):
    """The hand-built network definition, for the float32 bound of its arithmetic (tests/tolerances.py)."""
    from tests.helpers import NetworkRun
    from wts_export.weights import load_weights

    return NetworkRun(load_weights(mnet_pth)).network


@pytest.fixture(scope="module")
def fixed_onnx(mnet_pth, tmp_path_factory):
    return export_onnx(mnet_pth, tmp_path_factory.mktemp("onnx") / "mnet640.onnx")


@pytest.fixture(scope="module")
def dynamic_onnx(mnet_pth, tmp_path_factory):
    return export_onnx(mnet_pth, tmp_path_factory.mktemp("onnx") / "mnet_dyn.onnx", dynamic=True)


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["loc", "conf", "landms"], {"input": x})


def _dims(value_info):
    return [d.dim_value or d.dim_param for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", ["loc", "conf", "landms"])
def test_real_checkpoint_reproduces_the_original_outputs(fixed_onnx, crowd_reference, name):
    outputs = dict(zip(("loc", "conf", "landms"), _run(fixed_onnx, crowd_reference["input_640x640_bgr_minus_mean"])))
    np.testing.assert_allclose(outputs[name], crowd_reference[f"{name}_640"], rtol=0, atol=REFERENCE_ATOL)


def test_names_opset_and_fixed_shape(fixed_onnx):
    model = onnx.load(str(fixed_onnx))
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["loc", "conf", "landms"]
    assert _dims(model.graph.input[0]) == [1, 3, 640, 640]
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_dynamic_export_has_symbolic_batch_height_width(dynamic_onnx):
    model = onnx.load(str(dynamic_onnx))
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]


def _producers(model):
    return {out: node for node in model.graph.node for out in node.output}


def _shape_sources(name, producers):
    """The inputs of every Shape node the tensor ``name`` is computed from."""
    node = producers.get(name)
    if node is None:
        return set()
    if node.op_type == "Shape":
        return {node.input[0]}
    return set().union(*(_shape_sources(i, producers) for i in node.input if i))


def test_dynamic_resize_takes_its_size_from_the_lateral_tensor(dynamic_onnx):
    model = onnx.load(str(dynamic_onnx))
    producers = _producers(model)
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    adds = {n.input[1] if producers.get(n.input[0]) in resizes else n.input[0]: n
            for n in model.graph.node if n.op_type == "Add" and any(producers.get(i) in resizes for i in n.input)}
    assert len(resizes) == 2 and len(adds) == 2
    for resize in resizes:
        lateral = next(lat for lat, add in adds.items() if resize.output[0] in add.input)
        sizes = producers[resize.input[3]]          # Concat(N, C of the upsampled tensor; H, W of the lateral)
        assert sizes.op_type == "Concat" and _shape_sources(sizes.input[-1], producers) == {lateral}
        assert _shape_sources(sizes.input[0], producers) == {resize.input[0]}


def test_resize_is_floor_nearest_like_pytorch(dynamic_onnx):
    attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                  for n in onnx.load(str(dynamic_onnx)).graph.node if n.op_type == "Resize"]
    assert all((a["mode"], a["coordinate_transformation_mode"], a["nearest_mode"])
               == (b"nearest", b"asymmetric", b"floor") for a in attributes)


def test_metadata_names_the_backbone_and_weights(fixed_onnx, mnet_pth):
    from wts_export.weights import sha256_file

    _, facts = read_model_facts(fixed_onnx)
    assert (facts["backbone"], facts["weights_sha256"]) == ("mobilenet0.25", sha256_file(mnet_pth))


def test_file_passes_the_full_checker(dynamic_onnx):
    onnx.checker.check_model(onnx.load(str(dynamic_onnx)), full_check=True)


def test_opset_9_is_refused_with_the_minimum(mnet_pth, tmp_path):
    with pytest.raises(RetinaFaceError, match="--opset 11"):
        export_onnx(mnet_pth, tmp_path / "m.onnx", opset=9)
    assert list(tmp_path.iterdir()) == []


def test_opset_11_export_runs_at_an_odd_size(mnet_pth, mnet_network, tmp_path):
    import torch

    from tests.tolerances import retinaface_tolerance
    from wts_export.onnx_export import torch_model

    path = export_onnx(mnet_pth, tmp_path / "m11.onnx", dynamic=True, opset=11)
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(0)) * 60
    with torch.inference_mode():
        expected = [t.numpy() for t in torch_model(mnet_pth)(x)]
    bound = retinaface_tolerance(mnet_network, expected)       # ONNX Runtime's kernels against PyTorch's
    for got, want in zip(_run(path, x.numpy()), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=bound)


def test_simplified_model_has_fewer_nodes_and_same_outputs(mnet_pth, mnet_network, dynamic_onnx, tmp_path):
    from tests.tolerances import retinaface_tolerance

    path = export_onnx(mnet_pth, tmp_path / "slim.onnx", dynamic=True, simplify=True)
    x = np.random.default_rng(1).normal(0, 60, (1, 3, 96, 160)).astype(np.float32)
    assert len(onnx.load(str(path)).graph.node) < len(onnx.load(str(dynamic_onnx)).graph.node)
    expected = _run(dynamic_onnx, x)
    bound = retinaface_tolerance(mnet_network, expected)        # fused nodes may sum in another order
    for got, want in zip(_run(path, x), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=bound)


def test_existing_output_needs_force(mnet_pth, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep")
    with pytest.raises(RetinaFaceError, match="--force"):
        export_onnx(mnet_pth, target)
    assert target.read_bytes() == b"keep"


def test_failed_export_leaves_no_file(monkeypatch, mnet_pth, tmp_path):
    import wts_export.onnx_export as module

    monkeypatch.setattr(module, "finish_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        export_onnx(mnet_pth, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_wts_weights_export_like_the_checkpoint(mnet_pth, fixed_onnx, tmp_path):
    from wts_export.checkpoint import load_state_dict
    from wts_export.wts import write_wts

    write_wts(load_state_dict(mnet_pth), tmp_path / "m.wts")
    path = export_onnx(tmp_path / "m.wts", tmp_path / "m.onnx")
    x = np.random.default_rng(2).normal(0, 60, (1, 3, 640, 640)).astype(np.float32)
    for got, want in zip(_run(path, x), _run(fixed_onnx, x)):
        np.testing.assert_array_equal(got, want)


def test_cli_export_onnx_dynamic(mnet_pth, tmp_path, capsys):
    code = main(["export-onnx", str(mnet_pth), str(tmp_path / "m.onnx"), "--dynamic", "--opset", "13"])
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert code == 0 and "wrote" in capsys.readouterr().out
    assert (model_backbone(model), _dims(model.graph.input[0])[2]) == ("mobilenet0.25", "height")


def test_cli_export_onnx_missing_checkpoint_is_one_line(tmp_path, capsys):
    code = main(["export-onnx", str(tmp_path / "absent.pth"), str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "not found" in err


def test_cli_fixed_size_prints_the_shape_of_the_file(mnet_pth, tmp_path, capsys):
    assert main(["export-onnx", str(mnet_pth), str(tmp_path / "m.onnx"), "--input-size", "320x240"]) == 0
    _, facts = read_model_facts(tmp_path / "m.onnx")
    assert facts["input_shape"] == [1, 3, 240, 320]
    assert "input [1, 3, 240, 320] (N, C, H, W)" in capsys.readouterr().out


def test_cli_dynamic_with_an_input_size_is_a_usage_error(mnet_pth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export-onnx", str(mnet_pth), str(tmp_path / "m.onnx"), "--dynamic", "--input-size", "320x240"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "retinaface-trt export-onnx: error:" in err and "not allowed with" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("opset", ["9", "21", "x", "0"])
def test_cli_opset_out_of_range_is_a_usage_error(mnet_pth, tmp_path, capsys, opset):
    with pytest.raises(SystemExit) as exit_info:
        main(["export-onnx", str(mnet_pth), str(tmp_path / "m.onnx"), "--opset", opset])
    assert exit_info.value.code == 2 and "argument --opset" in capsys.readouterr().err


def test_cli_opset_bounds_are_torchs():
    from torch.onnx import _constants

    from runtime.cli.export_onnx import MAX_OPSET
    assert MAX_OPSET == _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


def test_cli_output_in_a_read_only_folder_is_refused_before_export(mnet_pth, tmp_path, read_only, monkeypatch, capsys):
    read_only(tmp_path)
    monkeypatch.setattr("wts_export.onnx_export.torch_model", lambda w: pytest.fail("exported before the check"))
    assert main(["export-onnx", str(mnet_pth), str(tmp_path / "m.onnx")]) == 1
    assert f"cannot write {tmp_path / 'm.onnx'}: Permission denied" in capsys.readouterr().err

