"""``retinaface-trt detect`` in-process, over a replay backend (stored outputs of the original)."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import pytest

from runtime.cli import main as cli
from runtime import backends
from tests.runtime.conftest import ReplayBackend


@pytest.fixture
def detect(monkeypatch, crowd_reference):
    """Run ``detect`` with the replay backend; returns main's exit status."""
    monkeypatch.setattr(backends, "create_backend", lambda *a, **k: ReplayBackend(crowd_reference))

    def run(*argv):
        return cli.main(["detect", *argv, "--weights", "replayed.pth", "--resize", "stretch"])
    return run


@pytest.fixture
def crowd_copy(tmp_path, shared_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_dir / "images" / "crowd_1024x624.jpg", folder / "crowd.jpg")
    return folder / "crowd.jpg"


def test_json_record_schema(detect, crowd_copy, tmp_path, crowd_reference):
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy), "--json", str(out)) == 0
    [record] = json.loads(out.read_text())
    expected = crowd_reference["dets_640_in_origin_coords"]
    assert record["image"] == str(crowd_copy) and (record["width"], record["height"]) == (1024, 624)
    assert len(record["faces"]) == int((expected[:, 4] >= 0.6).sum())
    assert set(record["faces"][0]) == {"score", "box", "landmarks"}


def test_vis_threshold_flag_filters(detect, crowd_copy, tmp_path, crowd_reference):
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy), "--json", str(out), "--vis-threshold", "0.1") == 0
    expected = crowd_reference["dets_640_in_origin_coords"]
    assert len(json.loads(out.read_text())[0]["faces"]) == int((expected[:, 4] >= 0.1).sum())


def test_bad_file_in_batch_is_reported_and_others_run(detect, crowd_copy, tmp_path, capsys):
    bad = crowd_copy.parent / "broken.jpg"
    bad.write_bytes(crowd_copy.read_bytes()[:500])
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy.parent), "--json", str(out)) == 1
    records = json.loads(out.read_text())
    assert [os.path.basename(r["image"]) for r in records] == ["broken.jpg", "crowd.jpg"]
    assert "error" in records[0] and len(records[1]["faces"]) > 0
    assert "broken.jpg" in capsys.readouterr().err


def test_missing_file_exits_1_with_one_line(detect, tmp_path, capsys):
    assert detect(str(tmp_path / "absent.jpg")) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "absent.jpg" in errors[0]


def test_glob_input_expands(detect, crowd_copy, tmp_path):
    shutil.copy(crowd_copy, crowd_copy.parent / "second.jpg")
    out = tmp_path / "out.json"
    assert detect(str(crowd_copy.parent / "*.jpg"), "--json", str(out)) == 0
    assert len(json.loads(out.read_text())) == 2


def test_progress_bar_only_for_several_images(detect, crowd_copy, capsys):
    assert detect(str(crowd_copy)) == 0
    assert "1/1" not in capsys.readouterr().err
    assert detect(str(crowd_copy), str(crowd_copy)) == 0
    assert "2/2" in capsys.readouterr().err


def test_save_dir_writes_annotated_copy(detect, crowd_copy, tmp_path):
    assert detect(str(crowd_copy), "--save-dir", str(tmp_path / "vis")) == 0
    drawn = cv2.imread(str(tmp_path / "vis" / "crowd.jpg"))
    assert drawn.shape == (624, 1024, 3) and (drawn != cv2.imread(str(crowd_copy))).any()


def test_existing_json_needs_force(detect, crowd_copy, tmp_path, capsys):
    out = tmp_path / "out.json"
    out.write_text("keep")
    assert detect(str(crowd_copy), "--json", str(out)) == 1
    assert out.read_text() == "keep" and "--force" in capsys.readouterr().err
    assert detect(str(crowd_copy), "--json", str(out), "--force") == 0


def test_model_error_leaves_no_output(crowd_copy, tmp_path, capsys):
    out, vis = tmp_path / "out.json", tmp_path / "vis"
    status = cli.main(["detect", str(crowd_copy), "--weights", str(tmp_path / "absent.pth"),
                       "--backend", "torch", "--json", str(out), "--save-dir", str(vis)])
    assert status == 1 and not out.exists() and not vis.exists()
    assert capsys.readouterr().err.count("\n") == 1


def test_max_pixels_flag_refuses_large_image(detect, crowd_copy, capsys):
    assert detect(str(crowd_copy), "--max-pixels", "1000") == 1
    assert "exceeds the limit" in capsys.readouterr().err


def test_bad_input_size_is_a_usage_error(detect, crowd_copy, capsys):
    with pytest.raises(SystemExit) as exit_info:
        detect(str(crowd_copy), "--input-size", "big")
    assert exit_info.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err


def test_unreadable_folder_is_reported(detect, crowd_copy, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_listdir = os.listdir

    def listdir(path):  # chmod 0 does not stop root, so the refusal is simulated
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied")
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    assert detect(str(locked), str(crowd_copy)) == 1
    assert "cannot read folder" in capsys.readouterr().err
