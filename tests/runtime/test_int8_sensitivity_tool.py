"""tools/int8_sensitivity.py on small crops: one row per point left quantized, worst first."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "int8_sensitivity.py"
KEEP = ("body.stage1.[3-5].*", "body.stage2.*", "body.stage3.*", "fpn.*", "ssh*")     # 3 points left: quick


def load_tool():
    spec = importlib.util.spec_from_file_location("int8_sensitivity", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sensitivity_rows_cover_the_quantized_points_worst_first(mnet_pth, crop_calibration, tmp_path, capsys):
    from network.config import config_for_weights
    from network.quantize import DEFAULT_KEEP
    from runtime.calibration import observed_network
    from wts_export.weights import load_weights

    config, _, text = crop_calibration
    (tmp_path / "cal.json").write_text(text)                 # the session's calibration, not a second one
    arrays = load_weights(mnet_pth)
    every = observed_network(arrays, config_for_weights(arrays))[1]
    expected = {p for p in every if not any(fnmatch.fnmatchcase(p, k) for k in DEFAULT_KEEP + KEEP)}
    args = ["--weights", str(mnet_pth), "--calibration-images", str(config.images), "--calibration-count", "16",
            "--calibration-cache", str(tmp_path / "cal.json"), "--images", "1", "--top", "100"]
    assert load_tool().main(args + [f"--keep-precision={k}" for k in KEEP]) == 0
    rows = re.findall(r"^ +([0-9.]+) +([0-9.]+)  (\S+)$", capsys.readouterr().out, re.M)
    assert expected and {point for _, _, point in rows} == expected and len(rows) == len(expected)
    scores = [float(score) for score, _, _ in rows]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert (tmp_path / "cal.json").read_text() == text
