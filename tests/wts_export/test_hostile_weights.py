"""Hostile weight files, generated here: each refused on one line, quickly and with bounded memory, or (a
``module.``-prefixed .wts) loaded like the checkpoint it came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from retinaface_trt.errors import RetinaFaceError
from wts_export.checkpoint import MAX_CHECKPOINT_BYTES, load_state_dict
from wts_export.weights import load_weights
from wts_export.wts import write_wts

REPO = Path(__file__).resolve().parents[2]


def test_a_batchnorm_mean_of_1e38_is_refused_where_weights_are_checked(mnet_pth, tmp_path):
    state = load_state_dict(mnet_pth)
    state["body.stage1.0.1.running_mean"][0] = 1e38           # finite in float32, overflows in the network
    path = tmp_path / "extreme.pth"
    torch.save(state, path)
    with pytest.raises(RetinaFaceError, match=r"^.*extreme.pth: weight 'body.stage1.0.1.running_mean' holds 1e\+38 "
                                              r"at flat index 0; trained RetinaFace weights stay below 1e\+06"):
        load_weights(path)


def test_the_published_weights_are_well_within_the_magnitude_limits(mnet_pth):
    from network.weights import MAX_VARIANCE, MAX_WEIGHT_MAGNITUDE

    weights = load_weights(mnet_pth)
    variances = [np.abs(v).max() for k, v in weights.items() if k.endswith("running_var")]
    others = [np.abs(v).max() for k, v in weights.items() if not k.endswith("running_var")]
    assert max(others) * 1000 < MAX_WEIGHT_MAGNITUDE and max(variances) * 1000 < MAX_VARIANCE


def test_non_finite_detections_never_reach_json_as_invalid_floats():
    from runtime.face import to_json

    with pytest.raises(RetinaFaceError, match="not finite .* weights are out of range"):
        to_json({"faces": [{"score": float("inf")}]})


_INFLATE = textwrap.dedent("""
    import json, resource, sys, time
    from wts_export.weights import load_weights
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    try:
        load_weights(sys.argv[1])
        error = "no error"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"error": error, "growth_mib": (after - before) / 1024, "seconds": time.monotonic() - start}))
""")


def _inflating_checkpoint(mnet_pth, path: Path, inflated: int) -> None:
    """A real zip checkpoint whose first tensor record is replaced by ``inflated`` deflated zero bytes."""
    source = path.with_name("source.pth")
    torch.save(load_state_dict(mnet_pth), source)
    zeros = bytes(1 << 20)
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as hostile:
        records = original.infolist()
        target = next(info.filename for info in records if "/data/" in info.filename)
        for info in records:
            if info.filename == target:
                deflated = zipfile.ZipInfo(target)
                deflated.compress_type = zipfile.ZIP_DEFLATED
                with hostile.open(deflated, "w", force_zip64=True) as out:     # written in pieces: small memory
                    for _ in range(inflated >> 20):
                        out.write(zeros)
            else:
                hostile.writestr(info, original.read(info))


def test_a_record_that_inflates_to_gigabytes_is_refused_before_it_is_inflated(mnet_pth, tmp_path):
    path = tmp_path / "inflates.pth"
    _inflating_checkpoint(mnet_pth, path, MAX_CHECKPOINT_BYTES + (64 << 20))
    assert path.stat().st_size < 8 << 20
    result = subprocess.run([sys.executable, "-c", _INFLATE, str(path)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    outcome = json.loads(result.stdout)
    assert outcome["error"].startswith("RetinaFaceError") and "refused before inflating" in outcome["error"]
    assert outcome["growth_mib"] < 64, outcome        # nothing inflated (the record alone is 576 MiB)


def test_a_record_that_inflates_beyond_what_it_declares_fails_its_check(mnet_pth, tmp_path):
    path = tmp_path / "lies.pth"
    _inflating_checkpoint(mnet_pth, path, 64 << 20)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.file_size == 64 << 20)
    central = data.rindex(info.filename.encode()) - 46               # its central directory header
    assert data[central:central + 4] == b"PK\x01\x02" and data[central + 24:central + 28] == (64 << 20).to_bytes(4, "little")
    data[central + 24:central + 28] = (1024).to_bytes(4, "little")    # it now declares 1 KiB
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert sum(i.file_size for i in archive.infolist()) < MAX_CHECKPOINT_BYTES
    with pytest.raises(RetinaFaceError, match="damaged|CRC"):
        load_weights(path)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_weights_that_are_not_regular_files_say_what_they_are(tmp_path, kind):
    from runtime import Engine

    if kind == "fifo":
        path = tmp_path / "pipe.wts"
        os.mkfifo(path)
        expected = "is a FIFO"
    elif kind == "device":
        path, expected = Path("/dev/zero"), "is a device"
        link = tmp_path / "zero.pth"
        link.symlink_to(path)
        path = link
    else:
        path = tmp_path / "dir.pth"
        path.mkdir()
        expected = "is a folder"
    start = time.monotonic()
    for load in (lambda: load_weights(path), lambda: Engine(weights=str(path), backend="torch", device="cpu")):
        with pytest.raises(RetinaFaceError, match=rf"^weights file .* {expected}, not a regular file; expected a .pth or .wts file$"):
            load()
    assert time.monotonic() - start < 30


def test_a_checkpoint_named_wts_says_to_rename_it(mnet_pth, tmp_path):
    path = tmp_path / "model.wts"
    path.write_bytes(mnet_pth.read_bytes())
    with pytest.raises(RetinaFaceError, match=r"model.wts is a PyTorch checkpoint, not a .wts text file; rename it "
                                              r"to model.pth$"):
        load_weights(path)


def test_a_module_prefixed_wts_loads_like_the_prefixed_checkpoint(mnet_pth, tmp_path):
    state = {f"module.{k}": v for k, v in load_state_dict(mnet_pth).items()}
    torch.save(state, tmp_path / "dp.pth")
    write_wts(state, tmp_path / "dp.wts")
    from_pth, from_wts = load_weights(tmp_path / "dp.pth"), load_weights(tmp_path / "dp.wts")
    assert list(from_wts) == list(from_pth) and not any(k.startswith("module.") for k in from_wts)
    assert all(np.array_equal(from_wts[k], from_pth[k].reshape(-1)) for k in from_pth)
