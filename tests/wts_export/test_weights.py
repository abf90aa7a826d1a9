"""load_weights for .pth and .wts, and sha256_file."""

from __future__ import annotations

import hashlib

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
