"""``retinaface-trt benchmark`` in-process, with tiny repeats."""

import json

import pytest

from runtime.cli.main import main

ROW_KEYS = {"backend", "device", "precision", "batch", "input_size", "metric", "median", "min", "max", "repeats"}


def test_benchmark_times_what_users_call(mnet_pth, shared_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    image = str(shared_dir / "images" / "astronaut_512x512.png")
    code = main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--backend", "executor",
                 "--batch", "2", "--input-size", "160x128", "--warmup", "1", "--repeats", "2", "--baseline",
                 "--image", image, "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["env"]["timer"] == "time.perf_counter" and report["env"]["torch"] and report["failures"] == []
    metrics = {(r["backend"], r["metric"], r["batch"], r["notes"].get("resize")) for r in report["rows"]}
    assert {("executor", "model_ms", 1, None), ("executor", "model_ms", 2, None),
            ("executor", "detect_ms", 1, "original"), ("executor", "detect_ms", 1, "stretch"),
            ("executor", "sdk_ms", 1, None), ("executor", "images_per_s", 2, "stretch"),
            ("baseline", "detect_ms", 1, "stretch")} <= metrics
    assert all(ROW_KEYS <= set(r) and r["input_size"] == [160, 128] and r["repeats"] == 2 for r in report["rows"])
    assert "warm-up" in capsys.readouterr().out


def test_onnxruntime_rows_from_a_pth(mnet_pth, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--backend", "onnxruntime",
                 "--batch", "1", "--input-size", "96x96", "--warmup", "0", "--repeats", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"onnxruntime"} and len(rows) >= 6


def test_a_failing_backend_keeps_the_rows_already_measured(mnet_pth, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)      # `import tensorrt` fails: the tensorrt suite too
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--backend", "torch",
                 "--backend", "tensorrt", "--batch", "1", "--input-size", "96x96", "--warmup", "0",
                 "--repeats", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 1 and any(r["backend"] == "executor" for r in report["rows"])      # torch: its old name
    assert len(report["failures"]) == 1 and report["failures"][0].startswith("tensorrt")
    assert "tensorrt" in capsys.readouterr().err


def test_benchmark_refuses_zero_repeats(mnet_pth, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--repeats", "0"])
    assert exit_info.value.code == 2 and "--repeats" in capsys.readouterr().err


def test_layer_times_are_reported_for_a_backend_that_has_them(mnet_pth, monkeypatch, capsys):
    from runtime.backends.executor import ExecutorBackend

    calls = []

    def layer_times(self, batch, repeats=10):
        calls.append((tuple(batch.shape), repeats))
        return {"body.stage1.0.0": 0.25, "fpn.merge1.0": 0.5}

    monkeypatch.setattr(ExecutorBackend, "layer_times", layer_times, raising=False)
    monkeypatch.setattr(ExecutorBackend, "profiles_layers", True)
    assert main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--backend", "torch", "--batch", "1",
                 "--input-size", "96x96", "--warmup", "0", "--repeats", "1", "--layer-times"]) == 0
    out = capsys.readouterr().out
    assert calls == [((1, 3, 96, 96), 1)]
    assert out.index("fpn.merge1.0") < out.index("body.stage1.0.0")      # slowest first


def test_folder_times_decoding_and_detect_over_the_same_files(mnet_pth, photos, tmp_path, capsys):
    """``--folder``: the decode-only pass and detect's pipeline over the same files, the same number of images and
    the faces that detect reports for them."""
    out = tmp_path / "folder.json"
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    assert main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--backend", "torch", "--folder",
                 str(photos), "--resize", "stretch", "--input-size", "160x160", "--batch", "2", "--read-threads", "2",
                 "--pixel-budget", "8", "--warmup", "2", "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())["rows"]
    assert (row["images"], row["failed"], row["resize"]) == (5, 1, "stretch")
    assert row["ratio"] == pytest.approx(row["detect_images_per_s"] / row["decode_images_per_s"], rel=0.01)
    assert 0 < row["peak_decoded_megapixels"] <= 8 and row["faces"] > 0
    printed = capsys.readouterr().out
    assert "decode only (reader, 2 threads, decoder auto as each row says, 8 MP budget)" in printed
    assert " ratio " in printed and row["decoder"] == "cv2"        # auto on a CPU: OpenCV
    assert main(["detect", str(photos), "--weights", str(mnet_pth), "--device", "cpu", "--backend", "torch",
                 "--resize", "stretch", "--input-size", "160x160", "--json", str(tmp_path / "d.json")]) == 1
    assert sum(len(r["faces"]) for r in json.loads((tmp_path / "d.json").read_text())) == row["faces"]
