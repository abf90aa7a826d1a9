"""load_weights for .pth and .wts, and sha256_file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import warnings

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from tests.conftest import MNET_SHA256
from wts_export.checkpoint import load_state_dict
from wts_export.weights import load_weights, sha256_file
from wts_export.wts import write_wts


def test_checkpoint_gives_shaped_float32_without_counters(mnet_pth):
    state = load_state_dict(mnet_pth)
    weights = load_weights(mnet_pth)
    assert list(weights) == [k for k in state if not k.endswith("num_batches_tracked")]
    assert all(w.dtype == np.float32 and w.shape == tuple(state[k].shape) for k, w in weights.items())


def test_wts_gives_the_same_values_flat(mnet_pth, tmp_path):
    write_wts(load_state_dict(mnet_pth), tmp_path / "m.wts")
    from_pth, from_wts = load_weights(mnet_pth), load_weights(tmp_path / "m.wts")
    assert list(from_wts) == list(from_pth)
    assert all(np.array_equal(from_wts[k].view(np.uint32), from_pth[k].reshape(-1).view(np.uint32))
               for k in from_pth)


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match=r"\.pth, \.pt, \.wts"):
        load_weights(tmp_path / "model.onnx")


def test_sha256_of_published_checkpoint(mnet_pth):
    assert sha256_file(mnet_pth) == MNET_SHA256


def test_sha256_streams_in_chunks(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


def test_sha256_of_missing_file_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match="cannot read"):
        sha256_file(tmp_path / "absent")


# ---- checked values: every route refuses what a trained network cannot hold ------------------------------

CONV = "body.stage1.0.0.weight"          # first convolution, [8, 3, 3, 3]
VARIANCE = "body.stage1.0.1.running_var"  # its BatchNorm variance, [8]


@pytest.fixture(scope="module")
def mnet_state(mnet_pth):
    return load_state_dict(mnet_pth)


def _saved(tmp_path, state, fmt):
    """``state`` written as a .pth (torch.save's zip format) or a .wts file; returns the path."""
    import torch

    path = tmp_path / f"bad.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        write_wts(state, path)
    return path


def _with(state, key, value):
    changed = dict(state)
    changed[key] = value
    return changed


@pytest.mark.parametrize("fmt", ["pth", "wts"])
@pytest.mark.parametrize("key", [CONV, VARIANCE])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_value_is_refused_naming_the_key(mnet_state, tmp_path, fmt, key, bad):
    tensor = mnet_state[key].clone()
    tensor.view(-1)[5] = bad
    with pytest.raises(RetinaFaceError, match=rf"{tmp_path}.*{key.replace('.', '[.]')}.* not finite .*index 5"):
        load_weights(_saved(tmp_path, _with(mnet_state, key, tensor), fmt))


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "complex64"])
def test_integer_and_complex_tensors_are_refused_not_cast(mnet_state, tmp_path, dtype):
    import torch

    tensor = mnet_state[CONV].to(getattr(torch, dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a cast would warn (ComplexWarning) or pass silently
        with pytest.raises(RetinaFaceError, match=rf"{CONV.replace('.', '[.]')}' holds {dtype} values; expected floating"):
            load_weights(_saved(tmp_path, _with(mnet_state, CONV, tensor), "pth"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_floating_types_load_as_float32(mnet_state, tmp_path, dtype):
    import torch

    tensor = mnet_state[CONV].to(getattr(torch, dtype))
    loaded = load_weights(_saved(tmp_path, _with(mnet_state, CONV, tensor), "pth"))
    assert loaded[CONV].dtype == np.float32
    np.testing.assert_array_equal(loaded[CONV], tensor.float().numpy())


def test_float64_beyond_float32_range_is_refused(mnet_state, tmp_path):
    tensor = mnet_state[CONV].double()
    tensor.view(-1)[0] = 1e39
    with pytest.raises(RetinaFaceError, match="not finite in float32"):
        load_weights(_saved(tmp_path, _with(mnet_state, CONV, tensor), "pth"))


@pytest.mark.parametrize("fmt", ["pth", "wts"])
def test_negative_variance_is_refused(mnet_state, tmp_path, fmt):
    tensor = mnet_state[VARIANCE].clone()
    tensor[3] = -0.5
    with pytest.raises(RetinaFaceError, match=rf"variance '{VARIANCE}' has 1 negative .*-0\.5 at index 3"):
        load_weights(_saved(tmp_path, _with(mnet_state, VARIANCE, tensor), fmt))


def test_all_variances_zero_is_refused(mnet_state, tmp_path):
    zeroed = {k: (v * 0 if k.endswith("running_var") else v) for k, v in mnet_state.items()}
    with pytest.raises(RetinaFaceError, match="all 47 BatchNorm variances are 0"):
        load_weights(_saved(tmp_path, zeroed, "wts"))


def test_some_zero_variances_are_accepted(mnet_state, tmp_path):
    """Dead channels have zero variance in real networks: only all of them at zero is implausible."""
    tensor = mnet_state[VARIANCE] * 0
    assert load_weights(_saved(tmp_path, _with(mnet_state, VARIANCE, tensor), "pth"))[VARIANCE].max() == 0


def _flipped(data: bytes, count: int, at: float = 0.5) -> bytes:
    middle = int(len(data) * at)
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + count]) + data[middle + count:]


@pytest.mark.parametrize("at", [0.3, 0.5, 0.7, 0.9])
def test_flipped_bytes_in_the_published_checkpoint_are_refused(mnet_pth, tmp_path, at):
    """The published file is in the legacy format (no checksum): the flipped weights themselves give it away."""
    path = tmp_path / "flipped.pth"
    path.write_bytes(_flipped(mnet_pth.read_bytes(), 4, at))
    with pytest.raises(RetinaFaceError, match=r"convolution weight .* times the median .* damaged"):
        load_weights(path)


def test_flipped_byte_in_a_zip_checkpoint_fails_its_crc(mnet_state, tmp_path):
    path = _saved(tmp_path, mnet_state, "pth")
    path.write_bytes(_flipped(path.read_bytes(), 1))
    with pytest.raises(RetinaFaceError, match="fails the CRC-32 check"):
        load_weights(path)


def test_published_checkpoint_passes_every_check(mnet_pth):
    assert len(load_weights(mnet_pth)) == 253


def test_wts_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe.wts"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_error_of(load_weights, fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    try:
        assert not reader.is_alive(), "load_weights waited on a FIFO"
        assert "not a regular file" in outcome[0]
    finally:
        with contextlib.suppress(OSError):   # release a reader blocked in open() (the code before the fix)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def _error_of(function, *args) -> str:
    try:
        function(*args)
    except RetinaFaceError as error:
        return str(error)
    return "no error"
