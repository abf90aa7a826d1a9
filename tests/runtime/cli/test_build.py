"""`retinaface-trt build` and `inspect` on a machine without TensorRT."""

from __future__ import annotations

import sys

import pytest

from runtime.cli.main import main
from runtime.backends.tensorrt.sidecar import write_sidecar


@pytest.fixture()
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)     # `import tensorrt` raises ImportError


def test_build_without_tensorrt_exits_1_with_install_command(no_tensorrt, mnet_pth, tmp_path, capsys):
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine")])
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (1, 1)
    assert "TensorRT is not installed" in err and "pip install 'retinaface-trt[tensorrt]'" in err
    assert "--backend torch" in err


def test_build_writes_nothing_without_tensorrt(no_tensorrt, mnet_pth, tmp_path):
    main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine")])
    assert list(tmp_path.iterdir()) == []


def test_build_rejects_min_size_without_max_size(mnet_pth, tmp_path, capsys):
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--min-size", "320x320"])
    assert code == 1 and "--min-size and --max-size go together" in capsys.readouterr().err


def test_build_rejects_a_malformed_size(mnet_pth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--input-size", "640"])
    assert exit_info.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err


def test_inspect_prints_the_sidecar_without_tensorrt(no_tensorrt, tmp_path, capsys):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    write_sidecar(engine, {"backbone": "mobilenet0.25", "engine_bytes": 4})
    code = main(["inspect", str(engine)])
    out, err = capsys.readouterr()
    assert code == 0 and '"backbone": "mobilenet0.25"' in out and "TensorRT is not installed" in err
