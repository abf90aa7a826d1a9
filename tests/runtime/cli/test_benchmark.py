"""``retinaface-trt benchmark`` in-process, with tiny repeats."""

import json

from runtime.cli.main import main

ROW_KEYS = {"backend", "device", "precision", "batch", "input_size", "metric", "median", "min", "max", "repeats"}


def test_benchmark_writes_json_rows(mnet_pth, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--batch", "2", "--input-size",
                 "160x128", "--warmup", "1", "--repeats", "2", "--baseline", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["env"]["timer"] == "time.perf_counter" and report["env"]["torch"]
    metrics = {(r["backend"], r["metric"], r["batch"]) for r in report["rows"]}
    assert ("fast", "images_per_s", 2) in metrics and ("baseline", "e2e_ms_per_image", 1) in metrics
    assert all(ROW_KEYS <= set(r) and r["input_size"] == [160, 128] and r["repeats"] == 2 for r in report["rows"])
    assert "warm-up" in capsys.readouterr().out


def test_benchmark_refuses_zero_repeats(mnet_pth, capsys):
    code = main(["benchmark", "--weights", str(mnet_pth), "--device", "cpu", "--repeats", "0"])
    assert code == 1 and "--repeats" in capsys.readouterr().err
