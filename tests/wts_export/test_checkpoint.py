"""Safe checkpoint loading: accepted layouts and refused files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from retinaface_trt.errors import RetinaFaceError
from wts_export.checkpoint import load_state_dict


@pytest.fixture()
def small_state():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).state_dict()


def _saved(tmp_path, obj, name="ckpt.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _assert_same(loaded, expected):
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_real_checkpoint_loads_on_cpu_in_order(mnet_pth):
    state = load_state_dict(mnet_pth)
    assert len(state) == 300
    assert next(iter(state)) == "body.stage1.0.0.weight"
    assert {t.device.type for t in state.values()} == {"cpu"}


def test_plain_state_dict(tmp_path, small_state):
    _assert_same(load_state_dict(_saved(tmp_path, small_state)), small_state)


def test_module_prefix_is_removed(tmp_path, small_state):
    prefixed = {f"module.{k}": v for k, v in small_state.items()}
    _assert_same(load_state_dict(_saved(tmp_path, prefixed)), small_state)


@pytest.mark.parametrize("key", ["state_dict", "model"])
def test_wrapped_state_dict(tmp_path, small_state, key):
    _assert_same(load_state_dict(_saved(tmp_path, {key: small_state, "epoch": 7})), small_state)


def test_pickled_module_is_refused(tmp_path):
    path = _saved(tmp_path, nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(RetinaFaceError, match=r"model\.state_dict\(\)"):
        load_state_dict(path)


def test_dict_without_tensors_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match="expected a state_dict"):
        load_state_dict(_saved(tmp_path, {"epoch": 3, "lr": 0.1}))


def test_colliding_prefix_is_refused(tmp_path, small_state):
    both = dict(small_state, **{f"module.{k}": v for k, v in small_state.items()})
    with pytest.raises(RetinaFaceError, match="collide"):
        load_state_dict(_saved(tmp_path, both))


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match="does not exist"):
        load_state_dict(tmp_path / "absent.pth")


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", b"PK\x03\x04truncated zip"])
def test_non_checkpoint_file_is_refused(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(RetinaFaceError, match="not a .*PyTorch checkpoint"):
        load_state_dict(path)


def test_text_file_is_not_called_a_pickled_model(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("nope")
    with pytest.raises(RetinaFaceError, match=r"is not a PyTorch checkpoint \(Unsupported operand") as error:
        load_state_dict(path)
    assert "pickled Python objects" not in str(error.value)


def test_wts_file_given_as_a_checkpoint_says_so(tmp_path):
    path = tmp_path / "m.wts"
    path.write_text("1\nconv.weight 1 3f800000\n")
    with pytest.raises(RetinaFaceError, match="a .wts file is already converted"):
        load_state_dict(path)
