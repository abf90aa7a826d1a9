"""The .wts writer (bit-exact, atomic) and the strict reader."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from wts_export.checkpoint import load_state_dict
from wts_export.wts import read_wts, write_wts

# Bit patterns that a decimal or lossy path would change: NaN payloads, infinities, -0.0, denormals.
SPECIAL_BITS = np.array([0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7F800001, 0x7F800000, 0xFF800000,
                         0x80000000, 0x00000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x3F800000], np.uint32)


def _reference_line(name: str, values: np.ndarray) -> str:
    """Slow, independent encoding: one struct.pack per value."""
    words = [struct.pack(">f", float(v)).hex() for v in values.reshape(-1)]
    return " ".join([name, str(len(words))] + words)


def _bits(array) -> np.ndarray:
    return np.asarray(array, np.float32).reshape(-1).view(np.uint32)


@pytest.fixture()
def special():
    return SPECIAL_BITS.view(np.float32).reshape(3, 4)


def test_special_values_round_trip_bit_exact(tmp_path, special):
    write_wts({"a": torch.from_numpy(special), "b": np.zeros(2)}, tmp_path / "s.wts")
    back = read_wts(tmp_path / "s.wts")
    assert np.array_equal(back["a"].view(np.uint32), SPECIAL_BITS)
    assert back["a"].dtype == np.float32 and back["a"].shape == (12,)


def test_text_matches_independent_encoding(tmp_path):
    values = np.array([1.0, -0.0, 0.1, -2.5e-3], np.float32)
    write_wts({"w": values}, tmp_path / "t.wts")
    text = (tmp_path / "t.wts").read_text()
    assert text == "1\n" + _reference_line("w", values) + "\n"
    assert "3f800000 80000000" in text


def test_num_batches_tracked_is_skipped(tmp_path):
    summary = write_wts({"bn.weight": np.ones(3), "bn.num_batches_tracked": torch.tensor(5)}, tmp_path / "b.wts")
    assert list(read_wts(tmp_path / "b.wts")) == ["bn.weight"]
    assert tuple(summary) == (1, 3)


def test_real_checkpoint_round_trip(mnet_pth, tmp_path):
    state = load_state_dict(mnet_pth)
    kept = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    summary = write_wts(state, tmp_path / "m.wts")
    back = read_wts(tmp_path / "m.wts")
    assert tuple(summary) == (len(kept), sum(v.numel() for v in kept.values()))
    assert len(kept) == len(state) - sum(k.endswith("num_batches_tracked") for k in state)
    assert list(back) == list(kept)
    assert all(np.array_equal(back[k].view(np.uint32), _bits(v.numpy())) for k, v in kept.items())


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "o.wts").write_text("keep me")
    with pytest.raises(RetinaFaceError, match="--force"):
        write_wts({"w": np.ones(2)}, tmp_path / "o.wts")
    assert (tmp_path / "o.wts").read_text() == "keep me"


def test_force_overwrites(tmp_path):
    (tmp_path / "o.wts").write_text("old")
    write_wts({"w": np.ones(2)}, tmp_path / "o.wts", force=True)
    assert list(read_wts(tmp_path / "o.wts")) == ["w"]


def test_failure_mid_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_wts({"good": np.ones(2), "bad": "not numbers"}, tmp_path / "p.wts")
    assert list(tmp_path.iterdir()) == []


def test_name_with_space_is_refused(tmp_path):
    with pytest.raises(RetinaFaceError, match="whitespace"):
        write_wts({"a b": np.ones(1)}, tmp_path / "n.wts")


def test_reader_accepts_any_whitespace(tmp_path):
    (tmp_path / "w.wts").write_text("2\nx  2  3f800000\t40000000\r\ny 0\n")
    back = read_wts(tmp_path / "w.wts")
    assert back["x"].tolist() == [1.0, 2.0] and back["y"].size == 0


ONE = "a 1 3f800000"
BAD_FILES = [  # (content, line, words the message must contain)
    ("", 1, "entry count"),
    ("two\n" + ONE + "\n", 1, "number of entries as a decimal integer"),
    ("2\n" + ONE + "\n", 3, "entry 2 of 2"),
    ("1\n" + ONE + "\nb 1 3f800000\n", 3, "end of the file after 1 entries"),
    ("1\n" + ONE + "\n\n", 3, "end of the file after 1 entries"),
    ("2\n\n" + ONE + "\n", 2, "an entry 'name count hex"),
    ("1\na 1 3f80000\n", 2, "value 1 as exactly 8 hex digits"),
    ("1\na 2 3f800000 3f80000g\n", 2, "value 2 as exactly 8 hex digits"),
    ("1\na 1 3f8000000\n", 2, "value 1 as exactly 8 hex digits"),
    ("1\na 2 3f800000\n", 2, "2 values for a"),
    ("1\na 1 3f800000 3f800000\n", 2, "1 values for a"),
    ("2\n" + ONE + "\n" + ONE + "\n", 3, "already defined on line 2"),
    ("1\na\n", 2, "no value count"),
    ("1\na x 3f800000\n", 2, "value count of a as a decimal integer"),
]


@pytest.mark.parametrize("content, line, expected", BAD_FILES)
def test_reader_rejects_malformed_file(tmp_path, content, line, expected):
    path = tmp_path / "bad.wts"
    path.write_text(content)
    with pytest.raises(RetinaFaceError) as caught:
        read_wts(path)
    message = str(caught.value)
    assert str(path) in message and f"line {line}" in message and expected in message


def test_reader_rejects_missing_file(tmp_path):
    with pytest.raises(RetinaFaceError, match="not found"):
        read_wts(tmp_path / "absent.wts")


def test_reader_rejects_binary_file(tmp_path):
    (tmp_path / "bin.wts").write_bytes(b"1\n\xff\xfe\n")
    with pytest.raises(RetinaFaceError, match="cannot read"):
        read_wts(tmp_path / "bin.wts")
