"""compare: error measures, face matching, the onnxruntime backend, and the CLI table / JSON / exit code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from runtime.cli.main import main
from retinaface_trt.errors import RetinaFaceError
from runtime.backends import create_backend
from runtime.compare import match_faces, output_errors


def test_output_errors_are_max_abs_and_relative_to_the_second():
    a = (torch.tensor([[1.0, 2.0]]), torch.tensor([0.5]), torch.tensor([-4.0]))
    b = (torch.tensor([[1.0, 2.5]]), torch.tensor([0.5]), torch.tensor([-2.0]))
    absolute, relative = output_errors(a, b)
    assert absolute == {"loc": 0.5, "conf": 0.0, "landms": 2.0}
    assert relative == {"loc": 0.2, "conf": 0.0, "landms": 1.0}


def _dets(rows):
    return torch.tensor([box + [score] + [float(v) for v in range(10)] for box, score in rows])


def test_match_faces_pairs_by_iou_and_reports_worst_differences():
    da = _dets([([0, 0, 10, 10], 0.9), ([50, 50, 60, 60], 0.8)])
    db = _dets([([50, 50, 60, 60], 0.7), ([0, 0, 10, 10.5], 0.9), ([200, 200, 210, 210], 0.6)])
    db[1, 5] += 3.0   # one landmark x moved by 3 px
    assert match_faces(da, db) == pytest.approx((2, 0.1, 3.0))


def test_match_faces_with_no_overlap_matches_nothing():
    assert match_faces(_dets([([0, 0, 10, 10], 0.9)]), _dets([([20, 20, 30, 30], 0.9)]))[0] == 0


def test_onnxruntime_backend_from_weights_matches_stored_outputs(mnet_pth, crowd_reference):
    backend = create_backend("onnxruntime", weights=mnet_pth)
    loc, conf, landms = backend.infer(torch.from_numpy(crowd_reference["input_640x640_bgr_minus_mean"]))
    assert backend.fixed_input_size is None and backend.cfg.name == "mobilenet0.25"
    np.testing.assert_allclose(landms.numpy(), crowd_reference["landms_640"], rtol=0, atol=1e-4)


def test_onnxruntime_backend_refuses_a_wrong_size_for_a_fixed_model(mnet_pth, tmp_path):
    from wts_export.onnx_export import export_onnx

    backend = create_backend("auto", engine=export_onnx(mnet_pth, tmp_path / "m.onnx", input_size=(320, 256)))
    assert (backend.name, backend.fixed_input_size) == ("onnxruntime", (320, 256))
    with pytest.raises(RetinaFaceError, match="320x256"):
        backend.infer(torch.zeros(1, 3, 320, 320))


def test_onnxruntime_backend_refuses_cuda_without_onnxruntime_gpu(mnet_pth, monkeypatch):
    import onnxruntime

    from runtime.backends import onnxruntime as onnxruntime_backend

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime_backend, "resolve_device", lambda d: torch.device("cuda", 0))
    with pytest.raises(RetinaFaceError, match="onnxruntime-gpu"):
        create_backend("onnxruntime", weights=mnet_pth, device="cuda")


def test_detect_cli_runs_the_onnxruntime_backend(mnet_pth, shared_dir, tmp_path):
    out = tmp_path / "faces.json"
    code = main(["detect", str(shared_dir / "images" / "crowd_1024x624.jpg"), "--weights", str(mnet_pth),
                 "--backend", "onnxruntime", "--device", "cpu", "--json", str(out)])
    faces = json.loads(out.read_text())[0]["faces"]
    assert code == 0 and len(faces) == 26       # RETINAFACE_FACTS.md: 26 faces ≥ 0.6 at original size


def test_compare_cli_prints_every_pair(mnet_pth, shared_dir, capsys):
    code = main(["compare", "--weights", str(mnet_pth), str(shared_dir / "images" / "astronaut_512x512.png")])
    out = capsys.readouterr().out
    assert code == 0
    assert all(pair in out for pair in ("pytorch vs executor", "pytorch vs onnxruntime", "executor vs onnxruntime"))


def test_compare_cli_json_and_atol_exit(mnet_pth, shared_dir, capsys):
    code = main(["compare", "--weights", str(mnet_pth), "--json", "--atol", "1e-12", "--input-size", "320x320",
                 str(shared_dir / "images" / "astronaut_512x512.png")])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    worst = max(max(p["abs"].values()) for p in report["pairs"])
    assert (code, len(report["pairs"]), report["pairs"][0]["faces_a"]) == (1, 3, 1)
    assert 0 < worst and "more than --atol" in captured.err


def test_compare_cli_json_takes_a_path_as_in_every_command(mnet_pth, shared_dir, tmp_path, capsys):
    target = tmp_path / "new" / "report.json"
    code = main(["compare", "--weights", str(mnet_pth), "--input-size", "160x160", "--json", str(target),
                 str(shared_dir / "images" / "astronaut_512x512.png")])
    out = capsys.readouterr().out
    assert code == 0 and "pytorch vs executor" in out            # the table still printed
    assert len(json.loads(target.read_text())["pairs"]) == 3


def test_compare_cli_refuses_an_image_taken_as_the_json_path(mnet_pth, shared_dir, capsys):
    image = shared_dir / "images" / "astronaut_512x512.png"
    code = main(["compare", "--weights", str(mnet_pth), "--json", str(image), str(image)])
    assert code == 1 and "that is an image, not a JSON file name" in capsys.readouterr().err


def test_compare_cli_skips_an_engine_it_cannot_run(mnet_pth, shared_dir, tmp_path, capsys, monkeypatch):
    from runtime import backends

    monkeypatch.setattr(backends, "tensorrt_available", lambda: False)
    code = main(["compare", "--weights", str(mnet_pth), "--engine", str(tmp_path / "m.engine"),
                 "--input-size", "160x160", str(shared_dir / "images" / "astronaut_512x512.png")])
    assert code == 0 and "skipped tensorrt" in capsys.readouterr().err


def test_onnxruntime_from_weights_exports_once_into_the_cache(mnet_pth, private_cache, monkeypatch):
    from wts_export import onnx_export

    create_backend("onnxruntime", weights=str(mnet_pth)).close()
    exported = sorted((private_cache / "onnx").glob("*.onnx"))
    assert len(exported) == 1
    monkeypatch.setattr(onnx_export, "export_onnx", lambda *a, **k: pytest.fail("exported a second time"))
    backend = create_backend("onnxruntime", weights=str(mnet_pth))
    assert backend.cfg.name == "mobilenet0.25"
    backend.close()
