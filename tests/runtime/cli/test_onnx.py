"""``retinaface-trt compare`` flags (export-onnx's are tested with the exporter, tests/wts_export)."""

from __future__ import annotations

import pytest

from runtime.cli.main import main


@pytest.mark.parametrize("flag, value", [("--atol", "-1"), ("--atol", "nan"), ("--score-threshold", "2")])
def test_compare_flags_are_checked_while_parsing(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "a.jpg", "--weights", "w.pth", flag, value])
    assert exit_info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def test_compare_says_a_missing_image_before_loading_anything(tmp_path, capsys, monkeypatch):
    from runtime import compare

    monkeypatch.setattr(compare, "open_paths", lambda *a, **k: pytest.fail("the models were loaded"))
    assert main(["compare", str(tmp_path / "nope.jpg"), "--weights", "w.pth"]) == 1
    assert f"{tmp_path / 'nope.jpg'}: no such file; check the path" in capsys.readouterr().err


def test_compare_int8_without_calibration_images_is_one_error(capsys):
    assert main(["compare", "a.jpg", "--weights", "w.pth", "--precision", "int8"]) == 1
    assert "--precision int8 needs --calibration-images DIR" in capsys.readouterr().err
