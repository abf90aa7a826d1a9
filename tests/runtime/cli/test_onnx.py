"""``retinaface-trt compare`` flags (export-onnx's are tested with the exporter, tests/wts_export)."""

from __future__ import annotations

import pytest

from runtime.cli.main import main


@pytest.mark.parametrize("flag, value", [("--atol", "-1"), ("--atol", "nan"), ("--score-threshold", "2")])
def test_compare_flags_are_checked_while_parsing(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "a.jpg", "--weights", "w.pth", flag, value])
    assert exit_info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
