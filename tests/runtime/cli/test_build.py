"""`retinaface-trt build` on a machine without TensorRT: messages, exit codes, and checks made before any work."""

from __future__ import annotations

import sys

import pytest

from runtime.cli.main import main


@pytest.fixture()
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)     # `import tensorrt` raises ImportError


def test_build_without_tensorrt_exits_1_with_install_command(no_tensorrt, mnet_pth, tmp_path, capsys):
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine")])
    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (1, 1)
    assert "TensorRT is not installed" in err and "pip install '.[tensorrt]' in the retinaface-trt checkout" in err


def test_build_does_not_suggest_a_backend_flag_it_does_not_have(no_tensorrt, mnet_pth, tmp_path, capsys):
    """Issue 14: build said "`--backend torch` works without it", but build has no --backend."""
    main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine")])
    assert "--backend" not in capsys.readouterr().err


def test_build_writes_nothing_without_tensorrt(no_tensorrt, mnet_pth, tmp_path):
    main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine")])
    assert list(tmp_path.iterdir()) == []


def test_the_output_is_checked_before_anything_else(no_tensorrt, mnet_pth, tmp_path, capsys):
    """Issue 13: `build -o` is checked for writing before TensorRT is even looked for."""
    (tmp_path / "plain").write_bytes(b"")
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "plain" / "m.engine")])
    err = capsys.readouterr().err
    assert code == 1 and "plain is a file, not a folder" in err and "TensorRT" not in err


def test_an_existing_engine_needs_force(no_tensorrt, mnet_pth, tmp_path, capsys):
    (tmp_path / "m.engine").write_bytes(b"old")
    assert main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine")]) == 1
    assert "--force" in capsys.readouterr().err and (tmp_path / "m.engine").read_bytes() == b"old"


def test_build_rejects_min_size_without_max_size(mnet_pth, tmp_path, capsys):
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--min-size", "320x320"])
    assert code == 1 and "--min-size and --max-size go together" in capsys.readouterr().err


def test_build_rejects_a_malformed_size(mnet_pth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--input-size", "640"])
    assert exit_info.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err


def test_every_build_flag_has_help(capsys):
    """Issue 14: `build --max-size` had no help."""
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--max-size WxH largest input size", "--min-size WxH smallest input size", "--device N|cuda:N",
                 "--version-compatible", "--hardware-compatibility", "--with-postprocess", "--top-k TOP_K candidates kept before NMS"):
        assert flag in out, flag


def test_thresholds_without_with_postprocess_are_refused(mnet_pth, tmp_path, capsys):
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--nms-threshold", "0.5"])
    assert code == 1 and "--nms-threshold only apply to an engine built --with-postprocess" in capsys.readouterr().err


def test_top_k_above_tensorrts_limit_is_refused(mnet_pth, tmp_path, capsys):
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--with-postprocess", "--top-k", "5000"])
    assert code == 1 and "top_k must be an integer in 1..3840" in capsys.readouterr().err


def test_postprocessing_with_a_dynamic_size_is_refused(mnet_pth, tmp_path, capsys):
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--with-postprocess",
                 "--min-size", "320x320", "--max-size", "640x640"])
    assert code == 1 and "needs a fixed input size" in capsys.readouterr().err


def test_a_timing_cache_that_is_a_file_is_refused(mnet_pth, tmp_path, capsys, monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.16.1.11"))
    monkeypatch.setattr("runtime.backends.tensorrt.engine.TorchCuda.resolve", lambda self, device: types.SimpleNamespace(index=0))
    (tmp_path / "timing.cache").write_bytes(b"old single cache")
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--timing-cache", str(tmp_path / "timing.cache")])
    assert code == 1 and "--timing-cache takes a folder" in capsys.readouterr().err


def test_build_on_a_cpu_device_is_refused(mnet_pth, tmp_path, capsys, monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.16.1.11"))
    code = main(["build", str(mnet_pth), "-o", str(tmp_path / "m.engine"), "--device", "cpu"])
    assert code == 1 and "runs on an NVIDIA GPU, not on cpu" in capsys.readouterr().err
