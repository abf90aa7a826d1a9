"""``--precision int8`` from the command line: the calibration flags of detect, evaluate, compare and build, their
bad-input errors (one line, exit 1, nothing written), and the emulated INT8 network through the one pipeline."""

from __future__ import annotations

import json

import pytest

from runtime.cli.main import main
from tests.runtime.cli.test_evaluate import REFERENCE_AP

EVALUATE_TARGETS = {"easy": 0.01, "medium": 0.01, "hard": 0.02}     # issue 15: AP within these of fp32


@pytest.fixture()
def detect_args(mnet_pth, shared_dir):
    return ["detect", str(shared_dir / "images" / "crowd_1024x624.jpg"), "--weights", str(mnet_pth),
            "--backend", "torch", "--device", "cpu", "--resize", "stretch", "--input-size", "320x320"]


def one_error(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(f in err for f in fragments), err


def test_int8_without_calibration_images_is_one_error(detect_args, capsys):
    assert main(detect_args + ["--precision", "int8"]) == 1
    one_error(capsys, "--precision int8 needs --calibration-images DIR")


def test_calibration_flags_without_int8_are_one_error(detect_args, crop_folder, capsys):
    assert main(detect_args + ["--calibration-images", str(crop_folder)]) == 1
    one_error(capsys, "--calibration-images apply to --precision int8 only")


@pytest.mark.parametrize("count", ["8", "ten"])
def test_a_bad_calibration_count_is_a_usage_error(detect_args, crop_folder, count, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(detect_args + ["--precision", "int8", "--calibration-images", str(crop_folder), "--calibration-count", count])
    assert exit_info.value.code == 2 and "--calibration-count" in capsys.readouterr().err


def test_an_empty_calibration_folder_is_one_error_and_writes_nothing(detect_args, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = detect_args + ["--precision", "int8", "--calibration-images", str(tmp_path / "empty"),
                          "--calibration-cache", str(tmp_path / "c.json"), "--json", str(tmp_path / "faces.json")]
    assert main(args) == 1
    one_error(capsys, "holds no image files")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_cache_of_another_setup_is_one_error(detect_args, crop_calibration, tmp_path, capsys):
    config, _, text = crop_calibration
    document = json.loads(text)
    document["key"]["project_version"] = "0.0.1"
    cache = tmp_path / "c.json"
    cache.write_text(json.dumps(document))
    int8 = ["--precision", "int8", "--calibration-images", str(config.images), "--calibration-count", "16",
            "--calibration-cache", str(cache), "--resize", "original"]              # the calibration's settings
    assert main(detect_args + int8) == 1
    one_error(capsys, "was made for another setup (project version (\"0.0.1\" cached", "delete it")
    assert json.loads(cache.read_text()) == document


def test_detect_runs_the_emulated_int8_network_and_says_so(detect_args, crop_folder, tmp_path, capsys, caplog):
    out = tmp_path / "faces.json"
    args = detect_args + ["--precision", "int8", "--calibration-images", str(crop_folder), "--calibration-count", "16",
                          "--keep-precision", "fpn.*", "--json", str(out)]
    assert main(args) == 0
    assert "INT8 is emulated on the executor" in caplog.text and "calibration: 16 images" in capsys.readouterr().err
    assert len(json.loads(out.read_text())[0]["faces"]) >= 10


def test_a_keep_pattern_of_no_layer_is_one_error(detect_args, crop_folder, capsys):
    args = detect_args + ["--precision", "int8", "--calibration-images", str(crop_folder), "--calibration-count", "16",
                          "--keep-precision", "body.stage9.*"]
    assert main(args) == 1
    one_error(capsys, "--keep-precision 'body.stage9.*' matches no layer")


def test_compare_adds_the_int8_path_and_judges_it_by_its_faces(mnet_pth, shared_dir, crop_folder, capsys):
    args = ["compare", str(shared_dir / "images" / "crowd_1024x624.jpg"), "--weights", str(mnet_pth),
            "--input-size", "320x320", "--precision", "int8", "--calibration-images", str(crop_folder),
            "--calibration-count", "16", "--match-iou", "0.9", "--json"]
    assert main(args) == 0           # the INT8 outputs differ from float32 by far more than --atol, by design
    report = json.loads(capsys.readouterr().out)
    assert "executor-int8 (emulated)" in report["paths"]
    pair = next(r for r in report["agreement"] if r["a"] == "executor" and r["b"] == "executor-int8 (emulated)")
    assert pair["faces_a"] > 0 and 0.5 < pair["share_of_a"] <= 1.0


def test_build_int8_without_calibration_images_is_one_error(mnet_pth, tmp_path, capsys):
    assert main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--precision", "int8"]) == 1
    one_error(capsys, "--precision int8 needs --calibration-images")
    assert list(tmp_path.iterdir()) == []


SUBSET = ("widerface", "val_subset_416")


def evaluate_args(shared_dir, mnet_pth, listed):
    subset = shared_dir.joinpath(*SUBSET)
    return ["evaluate", "--weights", str(mnet_pth), "--images", str(subset / "images"),
            "--ground-truth", str(shared_dir / "widerface" / "ground_truth"), "--list", str(listed),
            "--scale-manifest", str(subset / "manifest.tsv"), "--backend", "torch", "--device", "cpu", "-q"]


def test_evaluate_records_the_int8_settings_and_that_they_were_emulated(shared_dir, mnet_pth, crop_calibration,
                                                                          tmp_path, capsys):
    config, _, text = crop_calibration
    (tmp_path / "c.json").write_text(text)          # evaluate's settings (original sizes): no second calibration
    listed = tmp_path / "three.txt"
    listed.write_text("".join(shared_dir.joinpath(*SUBSET, "wider_val_subset.txt").read_text().splitlines(True)[:3]))
    args = evaluate_args(shared_dir, mnet_pth, listed)
    args += ["--precision", "int8", "--calibration-images", str(config.images), "--calibration-count", "16",
             "--calibration-cache", str(tmp_path / "c.json"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "(INT8 emulated on the executor)" in capsys.readouterr().out
    settings = json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]
    assert settings["precision"] == "int8" and settings["int8"]["emulated"] and settings["int8"]["count"] == 16


@pytest.mark.slow
def test_int8_ap_on_the_subset_is_within_the_targets(shared_dir, mnet_pth, tmp_path):
    """The issue's targets, calibrated on the evaluated images themselves (docs/int8.md also reports the split).
    fp32 is the original implementation's AP, which the project's fp32 matches within 0.0005 (test_evaluate)."""
    subset = shared_dir.joinpath(*SUBSET)
    args = evaluate_args(shared_dir, mnet_pth, subset / "wider_val_subset.txt")
    args += ["--precision", "int8", "--calibration-images", str(subset / "images"), "--out", str(tmp_path)]
    assert main(args) == 0
    int8 = json.loads((tmp_path / "summary.json").read_text())
    for setting, target in EVALUATE_TARGETS.items():
        assert REFERENCE_AP[setting] - int8[setting] <= target, setting
