"""The SDK Engine: base64 in, one JSON record out, errors as RetinaFaceError, release."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest

from retinaface_trt.errors import RetinaFaceError
from runtime import backends
from tests.runtime.conftest import ReplayBackend


@pytest.fixture
def engine(monkeypatch, crowd_reference):
    from runtime import Engine

    replay = ReplayBackend(crowd_reference)
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: replay)
    with Engine(weights="replayed.pth", resize="stretch", vis_threshold=0.5) as engine:
        yield engine


@pytest.fixture(scope="module")
def crowd_base64(shared_dir) -> str:
    return base64.b64encode((shared_dir / "images" / "crowd_1024x624.jpg").read_bytes()).decode()


def test_record_has_faces_above_vis_threshold(engine, crowd_base64, crowd_reference):
    record = json.loads(engine.infer(crowd_base64, name="crowd"))
    expected = crowd_reference["dets_640_in_origin_coords"]
    expected = expected[expected[:, 4] >= 0.5]
    assert (record["image"], record["width"], record["height"]) == ("crowd", 1024, 624)
    assert len(record["faces"]) == len(expected)
    first = record["faces"][0]
    assert first["box"]["w"] == pytest.approx(expected[0, 2] - expected[0, 0], abs=1e-3)
    assert [p["id"] for p in first["landmarks"]] == [0, 1, 2, 3, 4]


def test_faces_sorted_by_score(engine, crowd_base64):
    scores = [f["score"] for f in json.loads(engine.infer(crowd_base64))["faces"]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.5


def test_data_url_gives_the_same_record(engine, crowd_base64):
    assert engine.infer("data:image/jpeg;base64," + crowd_base64) == engine.infer(crowd_base64)


def test_invalid_base64_raises(engine):
    with pytest.raises(RetinaFaceError, match="invalid base64"):
        engine.infer("@@@")


def test_empty_base64_raises(engine):
    with pytest.raises(RetinaFaceError, match="empty"):
        engine.infer("")


def test_released_engine_refuses_infer(engine, crowd_base64):
    engine.release()
    engine.release()  # twice is fine
    with pytest.raises(RetinaFaceError, match="released"):
        engine.infer(crowd_base64)


def test_engine_needs_weights_or_engine():
    from runtime import Engine

    with pytest.raises(RetinaFaceError, match="weights"):
        Engine()


def test_importing_runtime_does_not_import_torch():
    code = "import sys, runtime; from runtime import Face; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_face_record_is_json_with_floats(engine, crowd_base64):
    face = json.loads(engine.infer(crowd_base64))["faces"][0]
    assert all(isinstance(v, float) for v in face["box"].values())
    assert np.isfinite([p["x"] for p in face["landmarks"]]).all()
